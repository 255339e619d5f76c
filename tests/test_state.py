"""Layer state through combinators, integer-input models, and the model summary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

K = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (6, 3))


@pytest.mark.parametrize("wrap", [
    lambda bn: fn.serial(fn.Dense(4), bn),
    lambda bn: fn.serial(fn.Dense(4), fn.residual(fn.serial(bn, fn.Dense(4)))),
    lambda bn: fn.serial(fn.Dense(4), fn.FanOut(2), fn.parallel(bn, fn.Identity), fn.FanInSum),
    lambda bn: fn.tie(fn.serial(fn.Dense(4), bn, fn.Dense(4)), (0, "b"), (2, "b")),
], ids=["serial", "residual", "parallel", "tie"])
def test_state_threads_through_every_combinator(wrap):
    net = wrap(fn.BatchNorm(momentum=0.5))
    assert net.has_state and net.needs_key
    params = net.init(K, (3,))
    state = fn.init_state(net, params)
    y, res = net.fwd(params, X, key=K)                      # training: no state needed
    new = fn.update_state(net, state, res)
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new))]
    assert any(moved) and len(jax.tree.leaves(new)) == 2    # the BN mean and var, nothing else
    y_inf = fn.apply(net, params, X, state=new)             # inference uses the running stats
    assert y_inf.shape == y.shape and not np.allclose(y_inf, y)
    with pytest.raises(ValueError, match="inference"):
        fn.apply(net, params, X)


def test_stateless_models_are_untouched():
    net = fn.serial(fn.Dense(2), fn.Relu)
    params = net.init(K, (3,))
    assert not net.has_state and fn.init_state(net, params) == ()
    _, res = net.fwd(params, X)
    assert fn.update_state(net, (), res) == ()
    value, grads = fn.value_and_grad(net, fn.losses.mean_squared_error)(params, X, jnp.ones((6, 2)))
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_value_and_grad_state_in_state_out_and_inference_unchanged():
    net = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Dense(1))
    params = net.init(K, (3,))
    state = fn.init_state(net, params)
    vg = fn.value_and_grad(net, fn.losses.mean_squared_error)
    y = jnp.ones((6, 1))
    v, g, new = vg(params, X, y, key=K, state=state)
    assert not np.allclose(new[1]["mean"], state[1]["mean"])
    assert len(vg(params, X, y, key=K)) == 2                # no state in, no state out


def test_embedding_first_model_infers_integer_input():
    v, d, t = 9, 4, 5
    net = fn.serial(fn.Embedding(v, d), fn.Dense(d), fn.Tanh, fn.Dense(v))
    params = net.init(K, (t,))                                 # the id shape alone
    ids = jax.random.randint(K, (3, t), 0, v)
    assert fn.output_shape(net, params, (t,)) == (t, v)
    report = fn.check_layer(net, params, ids)                  # no input-gradient row for ids
    assert report.ok and all(leaf.path.startswith("[0]") for leaf in report.leaves)
    assert fn.check_grads(net, fn.losses.softmax_cross_entropy, params, ids, ids).ok


def test_check_grads_names_the_model_on_a_wrong_shaped_gradient():
    good = fn.Dense(2)
    bad = fn.named("BadDense", good.init, good.fwd,
                   lambda res, dy: ({"w": good.bwd(res, dy)[0]["w"].T, "b": dy.sum(0)},
                                    good.bwd(res, dy)[1]))
    params = bad.init(K, (3,))
    with pytest.raises(ValueError, match="BadDense.*manual gradient for \\['w'\\] has shape"):
        fn.check_grads(bad, fn.losses.mean_squared_error, params, X, jnp.ones((6, 2)))


def test_init_rejects_a_bare_int_shape():
    with pytest.raises(TypeError, match=r"write \(2,\)"):
        fn.serial(fn.Dense(3)).init(K, 2)


def test_summary_table_counts_and_nesting():
    net = fn.serial(fn.Dense(8), fn.BatchNorm(), fn.Relu, fn.FanOut(2),
                    fn.parallel(fn.Dense(4), fn.residual(fn.Dense(8))), fn.FanInConcat(),
                    fn.Dense(3))
    s = fn.summary(net, (5,))
    assert s.total_params == 5 * 8 + 8 + 2 * 8 + 8 * 4 + 4 + 8 * 8 + 8 + 12 * 3 + 3
    assert s.total_params == sum(a.size for a in jax.tree.leaves(net.init(K, (5,))))
    assert s.total_state == 16
    names = [(r.depth, r.name) for r in s.rows]
    assert names[0] == (0, "serial") and (2, "residual") in names and (3, "Dense(8)") in names
    fan = next(r for r in s.rows if r.name == "FanOut(2)")
    assert fan.output_shape == ((8,), (8,))
    bn = next(r for r in s.rows if r.name.startswith("BatchNorm"))
    assert bn.state_shapes == {"mean": (8,), "var": (8,)}
    text = str(s)
    assert "total params: 211" in text and "mean (8,)" in text
    assert "<table>" in s._repr_html_() and str(net.summary((5,))) == text


def test_summary_counts_tied_params_once():
    lm = fn.tie(fn.serial(fn.Embedding(7, 4), fn.Tanh, fn.Unembed(7)), (0, "table"), (2, "table"))
    assert fn.summary(lm, (3,)).total_params == 7 * 4


def test_diagnostics_and_nan_finder_walk_graphs_and_batchnorm():
    net = fn.serial(fn.Dense(5), fn.FanOut(2), fn.parallel(fn.Dense(3), fn.Tanh),
                    fn.FanInConcat(), fn.BatchNorm(), fn.Dense(2))
    params = net.init(K, (3,))
    y = jnp.ones((6, 2))
    diag = fn.gradient_diagnostics(net, fn.losses.mean_squared_error, params, X, y, key=K)
    assert not diag.wrong_layers and diag.layers[1].output_shape == ((6, 5), (6, 5))
    report = fn.find_nonfinite(net, fn.losses.mean_squared_error, params, X, y, key=K)
    assert "all forward outputs" in str(report)
