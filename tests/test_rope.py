"""Rotary position embedding: three-way check, a NumPy reference written from the
definition (pairs rotated by position * theta^(-2i/dh)), and the pure functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.layers.rope import apply_rope, apply_rope_bwd, rope_angles
from layer_checks import assert_layer_correct


def randn(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def rope_reference(x, positions, theta):
    """NumPy float64: feature i and i + dh/2 of each head rotated by positions * inv_freq_i."""
    x = np.asarray(x, np.float64)
    dh = x.shape[-1]
    half = dh // 2
    inv = theta ** (-np.arange(half) * 2.0 / dh)
    a = np.asarray(positions, np.float64)[..., None] * inv          # (..., T, dh/2)
    if a.ndim == 3:
        a = a[:, None]                                               # (batch, 1, T, dh/2)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)], -1)


def test_rotary_embedding_three_way():
    assert_layer_correct(fn.RotaryEmbedding(100.0), (), randn((2, 2, 5, 4), 1), seed=2)


def test_rope_equals_reference_and_its_backward_is_the_inverse_rotation():
    x = randn((2, 3, 6, 8), 0)
    cos, sin = rope_angles(jnp.arange(6), 8, 500.0)
    assert cos.shape == sin.shape == (6, 8) and cos.dtype == jnp.float32
    y = apply_rope(x, cos, sin)
    np.testing.assert_allclose(y, rope_reference(x, np.arange(6), 500.0), atol=2e-6)
    np.testing.assert_allclose(fn.apply(fn.RotaryEmbedding(500.0), (), x), y, atol=1e-6)
    # a rotation: its VJP (the transpose) is its inverse, and it keeps every pair's norm
    np.testing.assert_allclose(apply_rope_bwd(y, cos, sin), x, atol=2e-6)
    np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1),
                               rtol=1e-5)


def test_per_example_positions_equal_shared_positions_row_by_row():
    x = randn((2, 2, 4, 4), 3)
    pos = jnp.array([[0, 1, 2, 3], [5, 6, 7, 8]])                  # e.g. a left-padded offset
    cos, sin = rope_angles(pos, 4, 10000.0)
    assert cos.shape == (2, 4, 4)
    y = apply_rope(x, cos, sin)
    for b in range(2):
        c, s = rope_angles(pos[b], 4, 10000.0)
        np.testing.assert_allclose(y[b:b + 1], apply_rope(x[b:b + 1], c, s), atol=1e-6)
    np.testing.assert_allclose(y, rope_reference(x, pos, 10000.0), atol=2e-6)


def test_angles_in_float64_when_asked():
    with jax.enable_x64(True):
        cos, _ = rope_angles(jnp.arange(3), 4, 10000.0, jnp.float64)
        assert cos.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(cos)[2, 1], np.cos(2 * 10000.0 ** -0.5), rtol=1e-15)


@pytest.mark.parametrize("call, err, match", [
    (lambda: rope_angles(jnp.arange(3), 5), ValueError, "even"),
    (lambda: rope_angles(jnp.arange(3.0), 4), TypeError, "integers"),
    (lambda: rope_angles(jnp.arange(3), 4, -1.0), ValueError, "positive"),
    (lambda: fn.RotaryEmbedding(0), ValueError, "RotaryEmbedding"),
    (lambda: fn.apply(fn.RotaryEmbedding(), (), randn((2, 5, 4))), ValueError, "4-d"),
    (lambda: fn.apply(fn.RotaryEmbedding(), (), randn((1, 2, 5, 3))), ValueError, "even"),
])
def test_bad_input_is_a_clear_error(call, err, match):
    with pytest.raises(err, match=match):
        call()
