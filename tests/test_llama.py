"""The Llama block and model: composed pieces, every gradient proven in float64 against
jax.grad, with and without a padding mask; per-example gradients through the mask; the
architecture record. (GPT-2's padding path equals transformers' attention_mask in
test_hf_transformers.py; its attention's mask, MultiHeadAttention's, in test_gqa.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.blocks import pass_mask
from fnnet.combinators import flat_layers
from layer_checks import assert_trees_close

V, T, B = 11, 6, 2
CE = fn.losses.softmax_cross_entropy
MASK = jnp.array([[True] * T, [False, False] + [True] * (T - 2)])      # left padding


def perturb(params, seed, scale=0.3):
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [a + scale * rng.standard_normal(a.shape).astype(a.dtype)
                                        for a in leaves])


@pytest.fixture(scope="module")
def tiny():
    """A 2-block Llama (GQA 4 -> 2 heads, untied) in float64 with ids, a left-padding mask
    and next-token labels; manual and autodiff value_and_grad jitted once."""
    model = fn.models.llama(V, 8, 4, 2, 12, num_kv_heads=2, rope_theta=100.0, attention_bias=True)
    with jax.enable_x64(True):
        params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), (T,))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), perturb(params, 1))
    rng = np.random.default_rng(2)
    ids = jnp.asarray(rng.integers(0, V, (B, T)), jnp.int32)
    labels = fn.losses.MaskedTarget(jnp.roll(ids, -1, axis=1), MASK)
    loss = fn.losses.masked(CE)
    vg = {m: jax.jit(fn.value_and_grad(model, loss, method=m)) for m in ("manual", "autodiff")}
    return model, params, ids, labels, vg


def test_block_is_composed_of_fnnet_pieces():
    block = fn.LlamaBlock(8, 4, 12, num_kv_heads=1, head_dim=4)
    params = jax.eval_shape(lambda k: block.init(k, (5, 8)), jax.random.key(0))
    assert [layer.name.split("(")[0] for _, layer, _, _ in flat_layers(block, params)] == \
        ["residual", "residual"]
    (rms1, attn), (rms2, mlp) = params
    assert set(rms1) == {"scale"} and rms2["scale"].shape == (8,)
    assert {k: v.shape for k, v in attn.items()} == {
        "w_q": (8, 16), "w_k": (8, 4), "w_v": (8, 4), "w_o": (16, 8)}
    assert {k: v.shape for k, v in mlp.items()} == {
        "w_gate": (8, 12), "w_up": (8, 12), "w_down": (12, 8)}


@pytest.mark.parametrize("padded", [False, True], ids=["ids", "ids+mask"])
def test_tiny_llama_manual_gradients_equal_jax_grad_in_float64(tiny, padded):
    model, params, ids, labels, vg = tiny
    x = (ids, MASK) if padded else ids
    with jax.enable_x64(True):
        v_man, g_man = vg["manual"](params, x, labels)
        v_auto, g_auto = vg["autodiff"](params, x, labels)
    assert g_man[0]["table"].dtype == jnp.float64
    assert abs(float(v_man) - float(v_auto)) <= 1e-13 * abs(float(v_auto))
    assert_trees_close(g_man, g_auto, 1e-10, "tiny Llama grads")
    assert all(np.max(np.abs(np.asarray(g))) > 1e-6 for g in jax.tree.leaves(g_man))


def test_padding_keys_do_not_reach_real_positions_and_nothing_is_nan(tiny):
    model, params, ids, _, _ = tiny

    @jax.jit
    def logits(p, i):       # padded, with other padding tokens, and without a mask
        other = i.at[1, :2].set((i[1, :2] + 3) % V)
        return (fn.apply(model, p, (i, MASK)), fn.apply(model, p, (other, MASK)),
                fn.apply(model, p, i))

    with jax.enable_x64(True):
        padded, other, plain = logits(params, ids)
    assert bool(jnp.isfinite(padded).all())
    np.testing.assert_allclose(other[1, 2:], padded[1, 2:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(padded[0], plain[0], rtol=1e-12)     # the unpadded row


def test_per_example_gradients_through_the_mask(tiny):
    model, params, ids, labels, vg = tiny
    loss = fn.losses.masked(CE)
    with jax.enable_x64(True):
        g = jax.jit(lambda p: fn.per_example_grads(model, loss, p, (ids, MASK), labels))(params)
        # each example alone (a batch of one) through the manual value_and_grad
        for i in range(B):
            one = jax.tree.map(lambda a: a[i:i + 1], labels)
            _, gi = vg["manual"](params, (ids[i:i + 1], MASK[i:i + 1]), one)
            assert_trees_close(jax.tree.map(lambda a: a[i], g), gi, 1e-10, f"example {i}")


def test_builders_attach_their_config():
    cfg = fn.models.config_of(fn.models.llama(V, 8, 4, 2, 12, num_kv_heads=1, tie_embeddings=True))
    assert (cfg.model_type, cfg.num_kv_heads, cfg.head_dim, cfg.tie_embeddings) == \
        ("llama", 1, 2, True)
    cfg = fn.models.config_of(fn.models.gpt(V, 8, d_model=8, num_heads=2, num_layers=1))
    assert (cfg.model_type, cfg.hidden, cfg.max_positions, cfg.tie_embeddings) == \
        ("gpt2", 32, 8, True)
    assert fn.models.config_of(fn.Dense(3)) is None
    params = jax.eval_shape(lambda k: fn.models.llama(V, 8, 4, 1, 12, tie_embeddings=True)
                            .init(k, (T,)), jax.random.key(0))
    assert params[-1] == {"table": None}


def test_llama_errors_are_clear():
    with pytest.raises(ValueError, match="llama: num_layers must be a positive int"):
        fn.models.llama(V, 8, 4, 0, 12)
    with pytest.raises(ValueError, match="num_kv_heads=3 must divide num_heads=4"):
        fn.models.llama(V, 8, 4, 1, 12, num_kv_heads=3)
    with pytest.raises(ValueError, match="LlamaBlock: d_model=6 is not divisible by num_heads=4"):
        fn.LlamaBlock(6, 4, 12)
    with pytest.raises(ValueError, match="tuple of 3"):
        model = fn.models.llama(V, 8, 4, 1, 12)
        params = jax.eval_shape(lambda k: model.init(k, (T,)), jax.random.key(0))
        jax.eval_shape(lambda p: fn.apply(model, p, (jnp.zeros((B, T), jnp.int32),) * 3), params)
    with pytest.raises(TypeError, match="not a fnnet Layer"):
        pass_mask(3)
