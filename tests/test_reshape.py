import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy: jax.random would compile a sampler for every new shape."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("layer,shape,out", [
    (fn.Flatten, (2, 3, 4, 2), (2, 24)),
    (fn.Reshape((4, -1)), (3, 2, 6), (3, 4, 3)),
], ids=lambda v: getattr(v, "name", None))
def test_reshape_three_way(layer, shape, out):
    x = randn(shape, 0)
    assert layer.init(jax.random.key(0), shape[1:]) == ()
    assert_layer_correct(layer, (), x)
    y, res = layer.fwd((), x)
    assert y.shape == out == jax.eval_shape(lambda x: fn.apply(layer, (), x), x).shape
    assert jax.tree.leaves(res) == []  # only the static input shape is kept
    np.testing.assert_array_equal(y, np.asarray(x).reshape(out))  # row-major, batch kept


def test_flatten_then_dense_in_serial():
    net = fn.serial(fn.Flatten, fn.Dense(3))
    params = net.init(jax.random.key(0), (4, 4, 2))
    assert params[1]["w"].shape == (32, 3)
    x = randn((2, 4, 4, 2), 1)
    y = fn.apply(net, params, x)
    np.testing.assert_allclose(y, np.asarray(x).reshape(2, 32) @ params[1]["w"], rtol=1e-5)
    y2 = fn.apply(fn.serial(fn.Reshape((2, 2, 8)), fn.Flatten, fn.Dense(3)), ((), *params), x)
    np.testing.assert_allclose(y2, y, rtol=1e-6)


def test_reshape_errors_are_clear():
    with pytest.raises(ValueError, match=r"Reshape\(\(5,\)\).*example of shape \(2, 3\).*6 entries"):
        fn.Reshape((5,)).fwd((), jnp.ones((4, 2, 3)))
    with pytest.raises(ValueError, match=r"Reshape.*at most one -1"):
        fn.Reshape((-1, -1))
    with pytest.raises(ValueError, match=r"Flatten.*batched input.*\(\)"):
        fn.Flatten.fwd((), jnp.float32(1.0))
