import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy (jax.random would compile a sampler per shape)."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def rmsnorm_reference(x, scale, eps):
    """torch.nn.RMSNorm's formula, float64."""
    x = np.asarray(x, np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * np.asarray(scale, np.float64)


def test_rmsnorm_three_way():
    layer = fn.RMSNorm()
    x = 3 * randn((2, 3, 6), 1) + 1
    assert_layer_correct(layer, {"scale": 1 + randn((6,), 2)}, x, seed=1)


def test_rmsnorm_init_and_formula():
    layer = fn.RMSNorm(eps=1e-3)
    params = layer.init(jax.random.key(0), (5, 6))
    assert params["scale"].shape == (6,) and params["scale"].dtype == jnp.float32
    np.testing.assert_array_equal(params["scale"], 1)
    x, scale = randn((3, 4, 6), 1) * 0.05, jnp.linspace(0.5, 2, 6)
    y = fn.apply(layer, {"scale": scale}, x)
    np.testing.assert_allclose(y, rmsnorm_reference(x, scale, 1e-3), rtol=1e-5, atol=1e-6)


def test_rmsnorm_backward_is_orthogonal_to_the_input():
    # with scale = 1, y = x / rms(x) is invariant to rescaling x, so dx . x = 0 (up to eps)
    layer = fn.RMSNorm()
    x = 10 * randn((3, 8), 0)
    y, res = layer.fwd(layer.init(jax.random.key(0), (8,)), x)
    _, dx = layer.bwd(res, randn(y.shape, 1))
    np.testing.assert_allclose(jnp.sum(dx * x, -1), 0, atol=1e-5)


def test_rmsnorm_equals_torch_float64():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 5))
    scale = np.random.default_rng(1).standard_normal(5)
    dy = np.random.default_rng(2).standard_normal((2, 3, 5))
    with jax.enable_x64(True):
        layer = fn.RMSNorm(eps=1e-6)
        y, res = layer.fwd({"scale": jnp.asarray(scale)}, jnp.asarray(x))
        grads, dx = layer.bwd(res, jnp.asarray(dy))
    norm = torch.nn.RMSNorm(5, eps=1e-6, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(scale))
    tx = torch.tensor(x, requires_grad=True)
    ty = norm(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grads["scale"], norm.weight.grad.numpy(), rtol=1e-11)


def test_rmsnorm_errors_are_clear():
    layer = fn.RMSNorm()
    params = layer.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"RMSNorm.*5 features.*\(2, 5\).*expects 4"):
        layer.fwd(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"RMSNorm.*batched input.*\(4,\)"):
        layer.fwd(params, jnp.ones((4,)))
    with pytest.raises(TypeError, match=r"RMSNorm.*floating-point"):
        layer.fwd(params, jnp.ones((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"RMSNorm: eps must be a positive"):
        fn.RMSNorm(eps=-1.0)
