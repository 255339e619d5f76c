import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy: jax.random would compile a sampler for every new shape."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


# The checks jit-compile several functions that draw the mask; the "rbg" PRNG
# compiles in a fraction of the time of the default threefry (the mask logic does
# not depend on the PRNG implementation; other tests here use the default).
def rbg_key(seed):
    return jax.random.key(seed, impl="rbg")


@pytest.mark.parametrize("rate,shape,seed", [(0.3, (2, 3, 5), 1)])
def test_dropout_three_way_in_training(rate, shape, seed):
    x = randn(shape, seed)
    assert_layer_correct(fn.Dropout(rate), (), x, key=rbg_key(seed + 10), seed=seed)


def test_dropout_is_identity_without_key():
    x = randn((3, 4), 0)
    layer = fn.Dropout(0.9)
    y, res = layer.fwd((), x)
    np.testing.assert_array_equal(y, x)
    _, dx = layer.bwd(res, 2 * x)
    np.testing.assert_array_equal(dx, 2 * x)
    assert_layer_correct(layer, (), x)


def test_dropout_inverted_scaling_and_mask_in_residuals():
    rate = 0.25
    x = jnp.ones((200, 50))
    y, mask = fn.Dropout(rate).fwd((), x, key=jax.random.key(3))
    assert mask.dtype == jnp.bool_ and mask.shape == x.shape
    np.testing.assert_allclose(y, np.where(mask, 1 / (1 - rate), 0.0), rtol=1e-6)
    assert abs(1 - float(jnp.mean(mask)) - rate) < 0.02  # rate is the DROP probability
    assert abs(float(jnp.mean(y)) - 1.0) < 0.03          # E[y] = x
    _, dx = fn.Dropout(rate).bwd(mask, jnp.full_like(x, 2.0))
    np.testing.assert_allclose(dx, np.where(mask, 2 / (1 - rate), 0.0), rtol=1e-6)


def test_manual_and_autodiff_see_the_same_mask():
    net = fn.serial(fn.Dense(8), fn.Dropout(0.5), fn.Dense(1))
    x = randn((6, 3), 0)
    y = jnp.ones((6, 1))
    params = ({"w": randn((3, 8), 1), "b": randn((8,), 2)}, (),
              {"w": randn((8, 1), 3), "b": randn((1,), 4)})
    key = rbg_key(2)
    loss = fn.losses.mean_squared_error
    v1, g1 = fn.value_and_grad(net, loss)(params, x, y, key=key)
    v2, g2 = fn.value_and_grad(net, loss, method="autodiff")(params, x, y, key=key)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g2)
    # a different key gives a different mask, hence different gradients
    _, g3 = fn.value_and_grad(net, loss)(params, x, y, key=rbg_key(5))
    assert not np.allclose(g1[0]["w"], g3[0]["w"])


def test_dropout_errors_are_clear():
    for rate in (-0.1, 1.0, 1.5, "0.5"):
        with pytest.raises(ValueError, match=r"Dropout: rate .* must be in \[0, 1\)"):
            fn.Dropout(rate)
    net = fn.serial(fn.Dense(2), fn.Dropout(0.5))
    assert net.needs_key and fn.Dropout(0.1).needs_key
    params = net.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"Dropout\(0.5\).*needs a PRNG key in training"):
        fn.value_and_grad(net, fn.losses.mean_squared_error)(params, jnp.ones((2, 3)), jnp.ones((2, 2)))
    with pytest.raises(TypeError, match=r"Dropout\(0.5\).*floating-point.*int32"):
        fn.Dropout(0.5).fwd((), jnp.ones((2, 2), jnp.int32), key=jax.random.key(0))
