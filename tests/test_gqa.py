"""GroupedQueryAttention: three-way checks (plain, and with a left-padding mask whose
rows see no key), a NumPy reference written from the definition, lean = full, the
padding mask's semantics, the pure decode functions, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.layers.gqa import attend, project_out, project_qkv
from layer_checks import assert_layer_correct
from test_rope import rope_reference


def randn(shape, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def random_params(layer, d, t, seed):
    """Init's shapes with random entries (non-zero biases, so a dropped bias gradient shows)."""
    shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), (t, d)))
    return {k: randn(s.shape, seed + i, 0.5) for i, (k, s) in enumerate(sorted(shapes.items()))}


LEFT_PADDED = jnp.array([[True] * 5, [False, False, True, True, True]])


def gqa_reference(params, x, heads, kv, theta, causal=True, mask=None):
    """NumPy float64 from the definition (no fnnet code): rope, kv head h // (H/KV)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    lin = lambda n: x @ p["w_" + n] + p.get("b_" + n, 0.0)
    q, k, v = lin("q"), lin("k"), lin("v")
    dh = q.shape[-1] // heads
    split = lambda a: a.reshape(b, t, -1, dh).transpose(0, 2, 1, 3)
    q, k, v = split(q), split(k), split(v)
    if theta is not None:
        q, k = rope_reference(q, np.arange(t), theta), rope_reference(k, np.arange(t), theta)
    visible = np.ones((b, t, t), bool)
    if causal:
        visible &= np.tril(np.ones((t, t), bool))
    if mask is not None:
        visible &= np.asarray(mask)[:, None, :]
    o = np.zeros((b, heads, t, dh))
    for h in range(heads):
        s = q[:, h] @ np.swapaxes(k[:, h // (heads // kv)], 1, 2) / np.sqrt(dh)
        s = np.where(visible, s, -np.inf)
        m = np.max(s, -1, keepdims=True)
        e = np.where(visible, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
        l = e.sum(-1, keepdims=True)
        o[:, h] = np.where(l > 0, e / np.where(l > 0, l, 1), 0) @ v[:, h // (heads // kv)]
    return o.transpose(0, 2, 1, 3).reshape(b, t, -1) @ p["w_o"] + p.get("b_o", 0.0)


# The lean core (blocks of 2 into 5) with multi-query heads, biases and a left-padding
# mask (rows with no visible key) in the default run; the full core on a plain input is
# slow here: its gradients equal these (test_equals_numpy_reference_and_lean_equals_full)
# and jax.grad's in float64 to 1e-10 inside the tiny Llamas (test_llama.py).
@pytest.mark.parametrize("kw, padded", [
    pytest.param(dict(num_kv_heads=2), False, marks=pytest.mark.slow),
    (dict(num_kv_heads=1, bias=True, memory="lean", block_size=2), True)],
    ids=["full", "lean-mqa-bias-mask"])
def test_three_way(kw, padded):
    layer = fn.GroupedQueryAttention(4, **kw)
    x = randn((2, 5, 8), 1)
    assert_layer_correct(layer, random_params(layer, 8, 5, 3), (x, LEFT_PADDED) if padded else x,
                         seed=2)


@pytest.mark.parametrize("heads, kv, kw", [
    (4, 2, dict(bias=True, head_dim=4, rope_theta=100.0)),        # H * dh != d
    pytest.param(4, 1, dict(causal=False), marks=pytest.mark.slow),   # MQA, no causal mask
])
def test_equals_numpy_reference_and_lean_equals_full(heads, kv, kw):
    full = fn.GroupedQueryAttention(heads, kv, **kw)
    lean = fn.GroupedQueryAttention(heads, kv, memory="lean", block_size=3, **kw)
    params, x = random_params(full, 8, 7, 0), randn((2, 7, 8), 1)
    mask = jnp.array([[True] * 7, [False] * 3 + [True] * 4])
    theta = kw.get("rope_theta", 10000.0)
    for inp, m in ((x, None), ((x, mask), mask)):
        ref = gqa_reference(params, x, heads, kv, theta, kw.get("causal", True), m)
        y, res = full.fwd(params, inp)
        y_lean, res_lean = lean.fwd(params, inp)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(y_lean, ref, rtol=1e-5, atol=1e-5)
        dy = randn(y.shape, 2)
        g_full, g_lean = full.bwd(res, dy), lean.bwd(res_lean, dy)
        for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_lean)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_full_heads_without_rope_equal_multi_head_attention():
    gqa = fn.GroupedQueryAttention(2, rope_theta=None, causal=True, bias=True)
    p = random_params(gqa, 8, 5, 4)
    mha_p = {"w_qkv": jnp.concatenate([p["w_q"], p["w_k"], p["w_v"]], 1),
             "b_qkv": jnp.concatenate([p["b_q"], p["b_k"], p["b_v"]]),
             "w_o": p["w_o"], "b_o": p["b_o"]}
    x = randn((2, 5, 8), 5)
    for inp in (x, (x, LEFT_PADDED)):
        np.testing.assert_allclose(fn.apply(gqa, p, inp),
                                   fn.apply(fn.MultiHeadAttention(2, causal=True), mha_p, inp),
                                   rtol=1e-5, atol=1e-6)


def test_padding_mask_hides_keys_and_empty_rows_give_zero_not_nan():
    layer = fn.GroupedQueryAttention(2, 1, bias=True)
    p, x = random_params(layer, 8, 5, 6), randn((2, 5, 8), 7)
    y, res = layer.fwd(p, (x, LEFT_PADDED))
    # padding keys do not matter: changing the padded inputs changes no real output
    y2 = fn.apply(layer, p, (x.at[1, :2].set(100.0), LEFT_PADDED))
    np.testing.assert_allclose(y2[1, 2:], y[1, 2:], rtol=1e-5, atol=1e-6)
    # a padding query under left padding sees no key: o = 0, so y = b_o; gradients finite
    np.testing.assert_allclose(y[1, :2], jnp.broadcast_to(p["b_o"], (2, 8)), atol=1e-6)
    dparams, (dx, dmask) = layer.bwd(res, jnp.ones_like(y))
    assert dmask is None
    assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves((dparams, dx)))
    # no mask = an all-True mask; integer 0/1 masks are accepted
    np.testing.assert_allclose(fn.apply(layer, p, (x, jnp.ones((2, 5), bool))),
                               fn.apply(layer, p, x), atol=1e-6)
    np.testing.assert_allclose(fn.apply(layer, p, (x, LEFT_PADDED.astype(jnp.int32))), y, atol=1e-6)


def test_pure_functions_reproduce_the_layer_and_a_cached_decode():
    layer = fn.GroupedQueryAttention(4, 2, bias=True)
    t_max = 4
    p, x = random_params(layer, 8, t_max, 8), randn((2, t_max, 8), 9)
    y = fn.apply(layer, p, x)
    kw = dict(num_heads=4, num_kv_heads=2, rope_theta=10000.0)
    q, k, v = project_qkv(p, x, jnp.arange(t_max), **kw)
    assert q.shape == (2, 4, t_max, 2) and k.shape == v.shape == (2, 2, t_max, 2)
    causal = jnp.tril(jnp.ones((t_max, t_max), bool))
    np.testing.assert_allclose(project_out(p, attend(q, k, v, causal[None])), y, atol=1e-6)

    @jax.jit
    def step(k_cache, v_cache, x_t, t):    # one new token against a cache of t_max slots
        qt, kt, vt = project_qkv(p, x_t, t[None], **kw)
        k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, kt, t, axis=2)
        v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, vt, t, axis=2)
        visible = (jnp.arange(t_max) <= t)[None, None, :]          # (1, T_q = 1, T_k)
        return k_cache, v_cache, project_out(p, attend(qt, k_cache, v_cache, visible))

    k_cache, v_cache = jnp.zeros_like(k), jnp.zeros_like(v)
    for t in range(t_max):
        k_cache, v_cache, yt = step(k_cache, v_cache, x[:, t:t + 1], jnp.asarray(t))
        np.testing.assert_allclose(yt[:, 0], y[:, t], atol=1e-6)


@pytest.mark.parametrize("make, inp, err, match", [
    (lambda: fn.GroupedQueryAttention(4, 3), None, ValueError, "divide num_heads"),
    (lambda: fn.GroupedQueryAttention(4, memory="x"), None, ValueError, "memory"),
    (lambda: fn.GroupedQueryAttention(2), (randn((2, 5, 8)), jnp.ones((2, 4), bool)),
     ValueError, r"mask has shape \(2, 4\), expected \(batch, T\) = \(2, 5\)"),
    (lambda: fn.GroupedQueryAttention(2), (randn((2, 5, 8)), jnp.ones((2, 5))),
     TypeError, "booleans"),
    (lambda: fn.GroupedQueryAttention(2), (randn((2, 5, 8)), None, None), ValueError, "tuple of 3"),
    (lambda: fn.GroupedQueryAttention(2), randn((5, 8)), ValueError, "batch axis"),
    (lambda: fn.GroupedQueryAttention(2), randn((2, 5, 6)), ValueError, "expects 8"),
])
def test_bad_input_is_a_clear_error(make, inp, err, match):
    with pytest.raises(err, match=match):
        layer = make()
        fn.apply(layer, layer.init(jax.random.key(0), (5, 8)), inp)


def test_odd_head_dim_with_rope_is_refused_at_init():
    with pytest.raises(ValueError, match="even"):
        fn.GroupedQueryAttention(2, head_dim=3).init(jax.random.key(0), (5, 8))
