import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0):
    """Test data from NumPy (jax.random would compile a sampler per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_positional_three_way():
    # T = 3 of a 5-row table: the unused rows must get exactly zero gradient
    layer = fn.PositionalEmbedding(5)
    assert_layer_correct(layer, {"table": randn((5, 4), 1)}, randn((2, 3, 4), 2), seed=3)


def test_positional_adds_the_first_rows_and_sums_the_batch():
    layer = fn.PositionalEmbedding(6)
    params = layer.init(jax.random.key(0), (4, 3))
    assert params["table"].shape == (6, 3)
    assert 0.01 < float(jnp.std(params["table"])) < 0.04          # N(0, 0.02^2), GPT-2's
    x, dy = randn((2, 4, 3), 1), randn((2, 4, 3), 2)
    y, res = layer.fwd(params, x)
    np.testing.assert_allclose(y, np.asarray(x) + np.asarray(params["table"])[:4], rtol=1e-6)
    grads, dx = layer.bwd(res, dy)
    np.testing.assert_array_equal(dx, dy)
    want = np.zeros((6, 3), np.float32)
    want[:4] = np.asarray(dy).sum(0)
    np.testing.assert_allclose(grads["table"], want, rtol=1e-6)


def test_positional_errors_are_clear():
    layer = fn.PositionalEmbedding(4)
    params = {"table": jnp.zeros((4, 3))}
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): the sequence has 5 steps.*"
                                         r"holds 4 positions.*max_len >= 5"):
        layer.fwd(params, jnp.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): expected a 3-d input.*\(5, 3\)"):
        layer.fwd(params, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): input has 2 features"):
        layer.fwd(params, jnp.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): empty input"):
        layer.fwd(params, jnp.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): input_shape must be \(T, d\)"):
        layer.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"PositionalEmbedding: max_len must be a positive int"):
        fn.PositionalEmbedding(0)
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\): the sequence has 5"):
        jax.jit(layer.fwd)(params, jnp.zeros((2, 5, 3)))
