import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy: jax.random would compile a sampler for every new shape."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("inner,shape", [
    (fn.Dense(4), (3, 4)),
    pytest.param(fn.serial(fn.Conv2D(1, 3), fn.Tanh), (1, 4, 4, 1), marks=pytest.mark.slow),
], ids=["dense", "conv"])
def test_residual_three_way(inner, shape):
    layer = fn.residual(inner)
    x = randn(shape, 0)
    params = layer.init(jax.random.key(1), shape[1:])
    assert jax.tree.structure(params) == jax.tree.structure(inner.init(jax.random.key(1), shape[1:]))
    assert_layer_correct(layer, params, x)


def test_residual_is_x_plus_layer_and_vjp_sums_both_paths():
    inner = fn.Dense(3)
    layer = fn.residual(inner)
    params = layer.init(jax.random.key(0), (3,))
    x = randn((2, 3), 1)
    dy = randn((2, 3), 2)
    y, res = layer.fwd(params, x)
    np.testing.assert_allclose(y, x + x @ params["w"] + params["b"], rtol=1e-6)
    dparams, dx = layer.bwd(res, dy)
    np.testing.assert_allclose(dx, dy + dy @ params["w"].T, rtol=1e-6)
    np.testing.assert_allclose(dparams["w"], x.T @ dy, rtol=1e-6)


def test_residual_keeps_needs_key_and_passes_the_key():
    layer = fn.residual(fn.Dropout(0.5))
    assert layer.needs_key and layer.name == "residual(Dropout(0.5))"
    x = jnp.ones((4, 10))
    y, mask = layer.fwd((), x, key=jax.random.key(0))
    np.testing.assert_allclose(y, 1 + np.where(mask, 2.0, 0.0))


def test_residual_errors_are_clear():
    with pytest.raises(ValueError, match=r"residual\(Dense\(5\)\).*maps shape \(3,\) to \(5,\).*keep the shape"):
        fn.residual(fn.Dense(5)).init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"residual: argument .* not a fnnet Layer"):
        fn.residual(fn.Dense)


def test_manual_path_never_calls_autodiff(monkeypatch):
    """Every new layer's backward runs with jax.grad/vjp/value_and_grad disabled."""
    net = fn.serial(fn.Conv2D(3, 3), fn.Gelu(), fn.MaxPool2D(2), fn.residual(fn.Conv2D(3, 2)),
                    fn.AvgPool2D(1), fn.Elu(), fn.Flatten, fn.LayerNorm(), fn.Dropout(0.2),
                    fn.Silu, fn.Softplus, fn.Reshape((3, 4)), fn.Flatten, fn.Dense(3),
                    fn.Softmax, fn.LogSoftmax)
    x = randn((2, 4, 4, 2), 0)
    params = net.init(jax.random.key(1), x.shape[1:])

    def boom(*args, **kwargs):
        raise AssertionError("autodiff called on the manual path")

    for name in ("grad", "vjp", "value_and_grad"):
        monkeypatch.setattr(jax, name, boom)
    f = jax.jit(fn.value_and_grad(net, fn.losses.mean_squared_error))
    value, grads = f(params, x, jnp.zeros((2, 3)), key=jax.random.key(2))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads[0]["w"]).sum()) > 0
    with pytest.raises(AssertionError, match="autodiff called"):  # the patch is in force
        fn.value_and_grad(net, fn.losses.mean_squared_error, method="autodiff")(
            params, x, jnp.zeros((2, 3)), key=jax.random.key(2))
