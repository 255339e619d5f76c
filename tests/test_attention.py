import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.layers.attention import full_forward
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0, dtype=np.float32):
    """Test data from NumPy (jax.random would compile a sampler per shape)."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def random_params(d, seed, dtype=np.float32):
    """Non-zero biases, so that a dropped bias gradient shows."""
    shapes = {"w_qkv": (d, 3 * d), "b_qkv": (3 * d,), "w_o": (d, d), "b_o": (d,)}
    return {k: randn(s, seed + i, 0.5, dtype) for i, (k, s) in enumerate(shapes.items())}


def attention_reference(params, x, heads, causal):
    """NumPy float64, written from the definition (no fnnet code)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    b, t, d = x.shape
    dh = d // heads
    qkv = x @ p["w_qkv"] + p["b_qkv"]
    out = np.zeros((b, t, d))
    for i in range(heads):
        q, k, v = (qkv[..., j * d + i * dh: j * d + (i + 1) * dh] for j in range(3))
        s = q @ np.swapaxes(k, 1, 2) / np.sqrt(dh)
        if causal:
            s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        out[..., i * dh:(i + 1) * dh] = (s / s.sum(-1, keepdims=True)) @ v
    return out @ p["w_o"] + p["b_o"]


# The full core without a mask, and the lean core with the causal mask and blocks
# that do not divide T (2 into 5: padded keys and queries). The other pairings equal
# these (test_attention_equals_numpy_reference_and_lean_equals_full). In the default
# run the lean core's gradients are proven by that test and, in float64 against
# jax.grad (1e-10), inside the tiny GPT (test_gpt.py); its own three-way run is slow.
@pytest.mark.parametrize("kw", [dict(causal=False),
                                pytest.param(dict(causal=True, memory="lean", block_size=2),
                                             marks=pytest.mark.slow)],
                         ids=["full", "lean-causal"])
def test_attention_three_way(kw):
    layer = fn.MultiHeadAttention(2, **kw)
    assert_layer_correct(layer, random_params(4, 3), randn((2, 5, 4), 1), seed=2)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_numpy_reference_and_lean_equals_full(causal):
    params, x = random_params(8, 0), randn((3, 7, 8), 1)
    ref = attention_reference(params, x, 2, causal)
    full = fn.MultiHeadAttention(2, causal=causal)
    lean = fn.MultiHeadAttention(2, causal=causal, memory="lean", block_size=3)
    y, res = jax.jit(full.fwd)(params, x)        # compiled: one program, not op by op
    y_lean, res_lean = jax.jit(lean.fwd)(params, x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_lean, ref, rtol=1e-5, atol=1e-5)
    dy = randn(y.shape, 2)
    g_full, g_lean = jax.jit(full.bwd)(res, dy), jax.jit(lean.bwd)(res_lean, dy)
    for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_lean)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_lean_residuals_hold_no_t_by_t_array():
    t, d = 64, 8
    params = jax.eval_shape(lambda: random_params(d, 0))
    x = jax.ShapeDtypeStruct((2, t, d), jnp.float32)

    def residual_shapes(memory):
        layer = fn.MultiHeadAttention(2, causal=True, memory=memory, block_size=16)
        res = jax.eval_shape(lambda p, x: layer.fwd(p, x)[1], params, x)
        return [a.shape for a in jax.tree.leaves(res)]

    assert (2, 2, t, t) in residual_shapes("full")
    lean = residual_shapes("lean")
    assert max(np.prod(s) for s in lean) == 2 * t * d            # the size of x, not T^2
    assert (2, 2, t) in lean                                       # the log-sum-exp


def test_causal_output_ignores_the_future():
    layer = fn.MultiHeadAttention(2, causal=True)
    params, x = random_params(4, 0), randn((2, 6, 4), 1)
    x2 = x.at[:, 4:].set(randn((2, 2, 4), 9))
    fwd, bwd = jax.jit(layer.fwd), jax.jit(layer.bwd)
    (y, res), (y2, _) = fwd(params, x), fwd(params, x2)
    np.testing.assert_array_equal(y[:, :4], y2[:, :4])
    assert np.all(np.abs(np.asarray(y[:, 4:] - y2[:, 4:])) > 0)
    # and position 2's output sends gradient only to positions <= 2
    _, dx = bwd(res, jnp.zeros_like(x).at[:, 2].set(1.0))
    np.testing.assert_array_equal(dx[:, 3:], 0)
    assert np.all(np.any(dx[:, :3] != 0, axis=-1))


def test_attention_init_layout():
    params = fn.MultiHeadAttention(4).init(jax.random.key(0), (10, 8))
    assert {k: v.shape for k, v in params.items()} == {
        "w_qkv": (8, 24), "b_qkv": (24,), "w_o": (8, 8), "b_o": (8,)}
    np.testing.assert_array_equal(params["b_qkv"], 0)
    bound = np.sqrt(6 / (8 + 24))          # PyTorch's xavier_uniform_ of in_proj_weight
    assert np.abs(params["w_qkv"]).max() <= bound


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_torch_multihead_attention_float64(causal):
    torch = pytest.importorskip("torch")
    d, heads, t = 8, 2, 5
    params = random_params(d, 4, np.float64)
    x = randn((3, t, d), 5, dtype=np.float64)
    with jax.enable_x64(True):
        params, x = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, x))
        layer = fn.MultiHeadAttention(heads, causal=causal)
        y, res = jax.jit(layer.fwd)(params, x)
        dy = randn(y.shape, 6, dtype=np.float64)
        grads, dx = jax.jit(layer.bwd)(res, dy)
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.asarray(params["w_qkv"]).T))
        mha.in_proj_bias.copy_(torch.tensor(np.asarray(params["b_qkv"])))
        mha.out_proj.weight.copy_(torch.tensor(np.asarray(params["w_o"]).T))
        mha.out_proj.bias.copy_(torch.tensor(np.asarray(params["b_o"])))
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if causal else None
    ty, _ = mha(tx, tx, tx, need_weights=False, attn_mask=mask)
    ty.backward(torch.tensor(np.asarray(dy)))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    torch_grads = {"w_qkv": mha.in_proj_weight.grad.T, "b_qkv": mha.in_proj_bias.grad,
                   "w_o": mha.out_proj.weight.grad.T, "b_o": mha.out_proj.bias.grad}
    for k, g in torch_grads.items():
        np.testing.assert_allclose(grads[k], g.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_attention_errors_are_clear():
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(3\): the width d=8 is not "
                                         r"divisible by num_heads=3"):
        fn.MultiHeadAttention(3).init(jax.random.key(0), (5, 8))
    layer = fn.MultiHeadAttention(2, causal=True)
    params = random_params(4, 0)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(3\): the width d=4 is not div"):
        fn.MultiHeadAttention(3).fwd(params, randn((2, 5, 4)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(2, causal=True\): expected a "
                                         r"3-d input .*got shape \(5, 4\).*x\[None\]"):
        layer.fwd(params, randn((5, 4)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*6 features.*expects 4"):
        layer.fwd(params, randn((2, 5, 6)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*empty input of shape \(0, 5, 4\)"):
        layer.fwd(params, jnp.zeros((0, 5, 4)))
    with pytest.raises(TypeError, match=r"MultiHeadAttention.*floating-point.*int32"):
        layer.fwd(params, jnp.zeros((2, 5, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*w_qkv has shape \(4, 8\)"):
        layer.fwd({**params, "w_qkv": params["w_qkv"][:, :8]}, randn((2, 5, 4)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: a causal mask needs a square"
                                         r".*3 queries and 5 keys"):
        full_forward(randn((1, 2, 3, 2)), randn((1, 2, 5, 2)), randn((1, 2, 5, 2)), causal=True)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(2\).*divisible"):
        jax.jit(fn.MultiHeadAttention(2).init, static_argnums=1)(jax.random.key(0), (5, 5))
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*features"):
        jax.jit(layer.fwd)(params, randn((2, 5, 6)))


@pytest.mark.parametrize("kwargs,msg", [
    (dict(num_heads=0), "num_heads must be a positive int"),
    (dict(num_heads=2, memory="small"), "memory must be one of"),
    (dict(num_heads=2, memory="lean", block_size=0), "block_size must be a positive int"),
])
def test_bad_settings(kwargs, msg):
    with pytest.raises(ValueError, match="MultiHeadAttention: " + msg):
        fn.MultiHeadAttention(**kwargs)
