"""The transformer block and the tiny GPT: composed pieces, every gradient proven.

llm.c's check, tighter: a 2-block GPT whose manual gradients equal jax.grad in
float64 for every parameter (normwise 1e-10; the two paths differ only in the
order of float64 roundings, ~1e-15 relative), and whose losses over 10 AdamW
steps (warmup, cosine decay, gradient clipping) equal the autodiff run's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.combinators import flat_layers
from fnnet.models import gpt
from layer_checks import assert_trees_close

V, T, B = 7, 5, 2


def randn(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def perturb(params, seed):
    """Random non-trivial params (LayerNorm scales and biases away from 1 and 0)."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    leaves = [a + 0.3 * rng.standard_normal(a.shape).astype(a.dtype) for a in leaves]
    return jax.tree.unflatten(treedef, leaves)


@pytest.fixture(scope="module")
def tiny():
    """A 2-block GPT in float64 with data and its jitted manual and autodiff
    ``value_and_grad`` (compiled once, shared by the tests; call under x64)."""
    model = gpt(V, 8, d_model=8, num_heads=2, num_layers=2)
    loss = fn.losses.softmax_cross_entropy
    with jax.enable_x64(True):
        params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), (T,))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), perturb(params, 1))
    rng = np.random.default_rng(2)
    ids = jnp.asarray(rng.integers(0, V, (B, T)), jnp.int32)
    labels = jnp.asarray(rng.integers(0, V, (B, T)), jnp.int32)
    vg = {m: jax.jit(fn.value_and_grad(model, loss, method=m)) for m in ("manual", "autodiff")}
    return model, params, ids, labels, vg


@pytest.mark.slow
def test_block_manual_vs_autodiff_vs_finite_differences():
    # each piece is checked three ways in its own test file (jit vs eager included), and
    # every block parameter of the tiny GPT below against jax.grad in float64 in the
    # default run; this adds finite differences through one whole block
    block = fn.TransformerBlock(8, 2)
    params = perturb(block.init(jax.random.key(0), (4, 8)), 3)
    report = fn.check_layer(block, params, randn((2, 4, 8), 4), seed=5, num_directions=1)
    assert report.ok, str(report)
    assert len(report.leaves) == len(jax.tree.leaves(params)) + 1     # every leaf and dx


def test_block_is_composed_of_fnnet_pieces():
    block = fn.TransformerBlock(8, 2, memory="lean")
    params = jax.eval_shape(lambda k: block.init(k, (4, 8)), jax.random.key(0))   # shapes only
    names = [layer.name.split("(")[0] for _, layer, _, _ in flat_layers(block, params)]
    assert names == ["residual", "residual"]                      # the two branches
    (ln1, attn), (ln2, (d_in, gelu, d_out)) = params
    assert set(attn) == {"w_qkv", "b_qkv", "w_o", "b_o"} and set(ln1) == {"scale", "bias"}
    assert d_in["w"].shape == (8, 32) and d_out["w"].shape == (32, 8) and gelu == ()
    assert "MultiHeadAttention(2, causal=True, memory='lean'" in block.name


def test_tiny_gpt_manual_gradients_equal_jax_grad_in_float64(tiny):
    model, params, ids, labels, vg = tiny
    loss = fn.losses.softmax_cross_entropy
    # the same GPT with the memory-lean attention (blocks of 2 rows: padded, causal)
    lean = gpt(V, 8, d_model=8, num_heads=2, num_layers=2, memory="lean", block_size=2)
    with jax.enable_x64(True):
        v_man, g_man = vg["manual"](params, ids, labels)
        v_auto, g_auto = vg["autodiff"](params, ids, labels)
        v_lean, g_lean = jax.jit(fn.value_and_grad(lean, loss))(params, ids, labels)
    assert g_man[-1] == {"table": None}                             # tied to params[0]
    assert g_man[0]["table"].dtype == jnp.float64
    assert abs(float(v_man) - float(v_auto)) <= 1e-13 * abs(float(v_auto))
    assert_trees_close(g_man, g_auto, 1e-10, "tiny GPT grads")
    assert abs(float(v_lean) - float(v_auto)) <= 1e-13 * abs(float(v_auto))
    assert_trees_close(g_lean, g_auto, 1e-10, "tiny GPT grads, lean attention")
    # every leaf carries signal (a leaf stuck at zero would pass the comparison trivially)
    assert all(np.max(np.abs(np.asarray(g))) > 1e-6 for g in jax.tree.leaves(g_man))


def test_tiny_gpt_adamw_run_equals_autodiff_run(tiny):
    # train_step's recipe (value_and_grad, update, apply_updates) with the fixture's
    # compiled value_and_grad, so the GPT is not compiled twice more
    model, params, ids, labels, vg = tiny
    schedule = fn.optim.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 10)
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0), fn.optim.adamw(schedule, weight_decay=0.1))

    @jax.jit
    def update(grads, state, p):
        updates, state = opt.update(grads, state, p)
        return fn.optim.apply_updates(p, updates), state

    with jax.enable_x64(True):
        runs = {}
        for method in ("manual", "autodiff"):
            p, s, values = params, opt.init(params), []
            for _ in range(10):
                v, g = vg[method](p, ids, labels)
                p, s = update(g, s, p)
                values.append(float(v))
            runs[method] = (np.array(values), p)
    np.testing.assert_allclose(runs["manual"][0], runs["autodiff"][0], rtol=1e-12)
    assert runs["manual"][0][-1] < runs["manual"][0][0] - 0.1      # it learns
    assert_trees_close(runs["manual"][1], runs["autodiff"][1], 1e-9, "params after 10 steps")


def test_gpt_and_block_errors_are_clear():
    with pytest.raises(ValueError, match=r"TransformerBlock: d_model=6 is not divisible by num_heads=4"):
        fn.TransformerBlock(6, 4)
    with pytest.raises(ValueError, match=r"TransformerBlock: mlp_ratio must be a positive int"):
        fn.TransformerBlock(8, 2, mlp_ratio=0)
    with pytest.raises(ValueError, match=r"gpt: num_layers must be a positive int"):
        gpt(V, 8, num_layers=0)
    model = gpt(V, 4, d_model=8, num_heads=2, num_layers=1)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): the sequence has 5 steps"):
        jax.eval_shape(lambda k: model.init(k, (5,)), key)
    params = jax.eval_shape(lambda k: model.init(k, (4,)), key)
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): the sequence has 6 steps"):
        jax.eval_shape(lambda p, x: fn.apply(model, p, x), params, jnp.zeros((2, 6), jnp.int32))
