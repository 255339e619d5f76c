"""One walker (fnnet.walk): every tool sees the same layers of one deeply nested graph.

The model holds every combinator (serial, FanOut, parallel, residual, FanInSum, tie,
mixed_precision), a learning rule (feedback alignment, in one parallel branch) and
BatchNorm (inside a residual). Summary, gradient diagnostics, the NaN finder, the
learning-rule tools, per-example gradients, layer state and check_grads must list
the same leaf layers in the same order, and their numbers must match references
computed WITHOUT the walker (the model's own bwd, value_and_grad, autodiff).
Everything runs in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet import walk
from fnnet.rules import alignment_angles, feedback_alignment, rule_grads

F64 = jnp.float64
V, T, N = 5, 3, 4
CE = fn.losses.softmax_cross_entropy
COMBINATORS = ("serial", "parallel", "residual", "tie", "mixed_precision")


def build(norm):
    branches = fn.parallel(fn.residual(fn.serial(fn.Dense(4), fn.Tanh)),
                           fn.serial(feedback_alignment(fn.Dense(4), jax.random.key(3)),
                                     fn.Sigmoid))
    lm = fn.serial(fn.Embedding(V, 4), fn.FanOut(2), branches, fn.FanInSum, fn.Unembed(V))
    tied = fn.tie(lm, (0, "table"), (4, "table"))
    return fn.serial(fn.mixed_precision(tied, F64, output_dtype=F64),
                     fn.residual(fn.serial(norm, fn.Dense(V))), fn.Dense(3))


NAMES = ["Embedding(5, 4)", "FanOut(2)", "Dense(4)", "Tanh", "feedback_alignment(Dense(4))",
         "Sigmoid", "FanInSum", "Unembed(5)", "NORM", "Dense(5)", "Dense(3)"]
FA, EMB, UNEMB = 4, 0, 7   # positions in NAMES


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        ids = jax.random.randint(jax.random.key(1), (N, T), 0, V)
        y = jax.random.randint(jax.random.key(2), (N, T), 0, 3)
        out = {}
        for kind, norm in (("bn", fn.BatchNorm()), ("ln", fn.LayerNorm())):
            model = build(norm)
            params = jax.tree.map(lambda a: a.astype(F64), model.init(jax.random.key(0), (T,)))
            out[kind] = model, params, [n.replace("NORM", norm.name) for n in NAMES]
        yield out, ids, y


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


KEY = jax.random.key(7)


def test_every_tool_lists_the_same_leaf_layers(problem):
    (models, ids, y) = problem
    model, params, names = models["bn"]
    entries = walk.leaves(model, params, KEY)
    assert [layer.name for _, layer, _, _ in entries] == names
    paths = [path for path, *_ in entries]
    assert paths[FA] == (0, 0, 0, 2, 1, 0)        # serial/mp/tie/serial/parallel/serial
    s = fn.summary(model, (T,))
    assert [r.name for r in s.rows if r.name not in COMBINATORS] == names
    assert s.total_params == sum(a.size for a in jax.tree.leaves(params))   # tied once
    assert s.total_state == 2 * V
    diag = fn.gradient_diagnostics(model, CE, params, ids, y, key=KEY)
    assert [row.name for row in diag.layers] == names
    assert [row.path for row in diag.layers] == paths
    assert diag.vjp_ok, diag
    assert diag.layers[FA].rule == "feedback alignment"
    assert diag.layers[FA].alignment_angle is not None
    angles = np.asarray(alignment_angles(model, CE, params, ids, y, key=KEY))
    assert angles.shape == (len(names),)
    value, rule, true = rule_grads(model, CE, params, ids, y, key=KEY)
    assert len(rule) == len(true) == len(names)


def test_gradients_per_layer_match_the_models_own_backward(problem):
    (models, ids, y) = problem
    model, params, _ = models["bn"]
    value, grads = fn.value_and_grad(model, CE)(params, ids, y, key=KEY)
    v, rule, true = rule_grads(model, CE, params, ids, y, key=KEY)
    np.testing.assert_allclose(v, value, rtol=1e-12)
    # each leaf's own gradient equals the model's own bwd routed to that leaf by the
    # walker; inside mixed_precision it is scaled by the loss scale; the tied table's
    # is the sum of its two uses
    scale = float(params[0].loss_scale)
    per_leaf = walk.leaves(model, grads)
    for j, (g, (path, layer, ref, _)) in enumerate(zip(rule, per_leaf)):
        if j not in (EMB, UNEMB):
            s = scale if path[:2] == (0, 0) else 1.0
            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref)):
                np.testing.assert_allclose(a / s, b, rtol=1e-12, err_msg=layer.name)
    table = grads[0].params[0]["table"]
    np.testing.assert_allclose((rule[EMB]["table"] + rule[UNEMB]["table"]) / scale, table,
                               rtol=1e-12)
    # the true gradient (rule layers' true_bwd) differs only upstream of the rule: the
    # Embedding's use of the table; it equals autodiff's
    auto = jax.grad(lambda p: fn.grad.loss_fn(model, CE)(p, ids, y, key=KEY))(params)
    np.testing.assert_allclose((true[EMB]["table"] + true[UNEMB]["table"]) / scale,
                               auto[0].params[0]["table"], rtol=1e-10)
    for j in range(len(rule)):
        if j != EMB:
            for a, b in zip(jax.tree.leaves(rule[j]), jax.tree.leaves(true[j])):
                np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not np.allclose(rule[EMB]["table"], true[EMB]["table"])
    # the diagnostics report the gradient each layer's params receive (unscaled)
    diag = fn.gradient_diagnostics(model, CE, params, ids, y, key=KEY)
    for row, (_, _, g, _) in zip(diag.layers, per_leaf):
        want = np.sqrt(sum(np.sum(np.square(a)) for a in jax.tree.leaves(g)))
        np.testing.assert_allclose(row.grad_norm or 0.0, want, rtol=1e-10, err_msg=row.name)


def test_check_grads_marks_only_the_leaves_a_rule_changes(problem):
    (models, ids, y) = problem
    model, params, _ = models["bn"]
    report = fn.check_grads(model, CE, params, ids, y, key=KEY, num_directions=1)
    assert report.ok, report
    marked = [leaf.path for leaf in report.leaves if leaf.rule]
    assert marked == ["[0].params[0]['table']"], report   # not the Dense beside the rule


def test_nan_finder_points_at_the_leaf_the_others_list(problem):
    (models, ids, y) = problem
    model, params, names = models["bn"]
    assert fn.find_nonfinite(model, CE, params, ids, y, key=KEY).ok
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    fa_w = "[0].params[2][1][0]['w']"                  # the rule layer's kernel
    assert fa_w in [jax.tree_util.keystr(p) for p, _ in flat]
    bad = treedef.unflatten([a.at[0, 0].set(jnp.nan) if jax.tree_util.keystr(p) == fa_w else a
                             for p, a in flat])
    report = fn.find_nonfinite(model, CE, bad, ids, y, key=KEY)
    path = walk.leaves(model, params)[FA][0]
    assert (report.stage, report.position, report.layer) == ("forward", path, names[FA])


def test_layer_state_follows_the_graph(problem):
    (models, ids, y) = problem
    model, params, _ = models["bn"]
    state = fn.init_state(model, params)
    assert jax.tree.structure(state) == jax.tree.structure(
        ((), ({"mean": 0, "var": 0}, ()), ()))
    _, res = model.fwd(params, ids, key=KEY)
    new = fn.update_state(model, state, res)
    _, root = walk.record(model, params, ids, key=KEY)
    bn = next(n for n in walk.leaf_nodes(root) if n.layer.name.startswith("BatchNorm"))
    np.testing.assert_allclose(new[1][0]["mean"], 0.1 * np.mean(bn.x, axis=(0, 1)), rtol=1e-6)


def test_per_example_gradients_see_through_every_combinator(problem):
    (models, ids, y) = problem
    model, params, _ = models["ln"]

    def run(p):
        got = fn.per_example_grads(model, CE, p, ids, y)
        norms = fn.per_example_grad_norms(model, CE, p, ids, y)
        # the reference: the model's own manual backward on batches of one example
        ref = jax.vmap(lambda xi, yi: fn.value_and_grad(model, CE)(p, xi[None], yi[None])[1])(
            ids, y)
        return got, norms, ref

    got, norms, ref = jax.jit(run)(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    sq = sum(np.sum(np.asarray(a).reshape(N, -1) ** 2, axis=1) for a in jax.tree.leaves(ref))
    np.testing.assert_allclose(norms, np.sqrt(sq), rtol=1e-10)
    bn_model, bn_params, _ = models["bn"]
    with pytest.raises(ValueError, match=r"BatchNorm\(.*\) couples the examples"):
        fn.per_example_grads(bn_model, CE, bn_params, ids, y, key=KEY)


def test_padding_mask_wrappers_are_graphs_too():
    # fnnet.blocks' pass_mask and masked_residual (a padding mask riding beside x): every
    # tool sees the wrapped layers, with (x, mask) pairs as with plain arrays
    model = fn.serial(fn.blocks.LlamaBlock(8, 2, 16),
                      fn.blocks.pass_mask(fn.Dense(3), keep=False))
    params = jax.tree.map(lambda a: a.astype(F64), model.init(jax.random.key(0), (T, 8)))
    x = (jax.random.normal(jax.random.key(1), (N, T, 8), F64),
         jnp.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool))
    y = jax.random.normal(jax.random.key(2), (N, T, 3), F64)
    mse = fn.losses.mean_squared_error
    names = [layer.name.split("(")[0] for _, layer, _, _ in walk.leaves(model, params)]
    assert names == ["RMSNorm", "GroupedQueryAttention", "RMSNorm", "SwiGLU", "Dense"]
    diag = fn.gradient_diagnostics(model, mse, params, x, y, check_vjp=False)  # rows only
    assert [row.name.split("(")[0] for row in diag.layers] == names
    assert [r.name.split("(")[0] for r in fn.summary(model, (T, 8)).rows
            if r.name not in COMBINATORS] == names

    def run(p):
        got = fn.per_example_grads(model, mse, p, x, y)
        ref = jax.vmap(lambda xi, mi, yi: fn.value_and_grad(model, mse)(
            p, (xi[None], mi[None]), yi[None])[1])(*x, y)
        return got, ref

    got, ref = jax.jit(run)(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_hand_made_and_old_style_layers_still_work():
    # a hand-made Layer(init, fwd, bwd) gets a default record; attributes pinned on fwd
    # in the old style (fwd.fnnet_per_example = ...) are still read
    dense = fn.Dense(2)

    def fwd(params, x, *, key=None):
        return dense.fwd(params, x)

    old = fn.Layer(dense.init, fwd, dense.bwd)
    m = fn.core.meta(old)
    assert (m.name, m.graph, m.per_example, old.has_state) == ("fwd", None, None, False)
    fwd.fnnet_name, fwd.fnnet_per_example = "OldDense", fn.core.meta(dense).per_example
    assert fn.core.meta(old).name == "OldDense" == old.name
    assert fn.core.meta(old).per_example is fn.core.meta(dense).per_example
    net, ref = fn.serial(old, fn.Tanh), fn.serial(dense, fn.Tanh)
    params = jax.tree.map(lambda a: a.astype(F64), ref.init(jax.random.key(0), (3,)))
    x, y = jax.random.normal(jax.random.key(1), (4, 3), F64), jnp.zeros((4, 2), F64)
    mse = fn.losses.mean_squared_error
    for a, b in zip(jax.tree.leaves(fn.per_example_grads(net, mse, params, x, y)),
                    jax.tree.leaves(fn.per_example_grads(ref, mse, params, x, y))):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert [r.name for r in fn.summary(net, (3,)).rows] == ["serial", "OldDense", "Tanh"]


def test_bidirectional_is_a_graph_of_two_copies():
    # fn.Bidirectional: the layer and its time-reversed copy, own params each
    model = fn.serial(fn.Bidirectional(fn.SimpleRNN(3)), fn.LastStep, fn.Dense(2))
    params = jax.tree.map(lambda a: a.astype(F64), model.init(jax.random.key(0), (T, 2)))
    x = jax.random.normal(jax.random.key(1), (N, T, 2), F64)
    y = jax.random.normal(jax.random.key(2), (N, 2), F64)
    mse = fn.losses.mean_squared_error
    entries = walk.leaves(model, params)
    assert [layer.name for _, layer, _, _ in entries] == ["SimpleRNN(3)", "SimpleRNN(3)",
                                                          "LastStep", "Dense(2)"]
    assert entries[1][2] is params[0]["backward"]
    diag = fn.gradient_diagnostics(model, mse, params, x, y)
    assert [row.path for row in diag.layers] == [e[0] for e in entries] and diag.vjp_ok, diag

    def run(p):
        got = fn.per_example_grads(model, mse, p, x, y)
        ref = jax.vmap(lambda xi, yi: fn.value_and_grad(model, mse)(p, xi[None], yi[None])[1])(
            x, y)
        return got, ref

    got, ref = jax.jit(run)(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
