import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy: jax.random would compile a sampler for every new shape."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def layernorm_reference(x, scale, bias, eps):
    """torch.nn.LayerNorm's formula: biased variance, eps inside the square root."""
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(bias)


@pytest.mark.parametrize("shape,seed", [((2, 3, 7), 1)])
def test_layernorm_three_way(shape, seed):
    layer = fn.LayerNorm()
    x = 3 * randn(shape, seed) + 1
    params = layer.init(jax.random.key(0), shape[1:])
    params = {"scale": 1 + randn(params["scale"].shape, seed + 5),
              "bias": randn(params["bias"].shape, seed + 6)}
    assert_layer_correct(layer, params, x, seed=seed)


def test_layernorm_init_and_torch_formula():
    layer = fn.LayerNorm(eps=1e-3)
    params = layer.init(jax.random.key(0), (6,))
    assert params["scale"].shape == params["bias"].shape == (6,)
    np.testing.assert_array_equal(params["scale"], 1)
    np.testing.assert_array_equal(params["bias"], 0)
    x = randn((3, 4, 6), 1) * 0.05
    scale, bias = jnp.linspace(0.5, 2, 6), jnp.linspace(-1, 1, 6)
    y = fn.apply(layer, {"scale": scale, "bias": bias}, x)
    np.testing.assert_allclose(y, layernorm_reference(x, scale, bias, 1e-3), rtol=1e-5, atol=1e-5)
    spec = jax.eval_shape(lambda x: fn.apply(layer, params, x), x)
    assert spec.shape == x.shape


def test_layernorm_backward_is_the_compact_form():
    # dx is orthogonal to 1 and (up to eps / var) to xhat, per example, when scale = 1
    layer = fn.LayerNorm()
    x = 10 * randn((3, 8), 0)
    params = layer.init(jax.random.key(0), (8,))
    y, res = layer.fwd(params, x)
    _, dx = layer.bwd(res, randn(y.shape, 1))
    np.testing.assert_allclose(jnp.sum(dx, -1), 0, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(dx * y, -1), 0, atol=1e-6)


def test_layernorm_errors_are_clear():
    layer = fn.LayerNorm()
    params = layer.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"LayerNorm.*5 features.*\(2, 5\).*expects 4"):
        layer.fwd(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"LayerNorm.*batched input.*\(4,\)"):
        layer.fwd(params, jnp.ones((4,)))
    with pytest.raises(ValueError, match=r"LayerNorm: eps must be a positive"):
        fn.LayerNorm(eps=0.0)
