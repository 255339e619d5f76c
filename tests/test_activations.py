import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

ACTIVATIONS = [fn.Identity, fn.Relu, fn.Sigmoid, fn.Tanh, fn.LeakyRelu(), fn.LeakyRelu(0.2)]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=lambda l: l.name)
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 7), (1, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_activation_three_way(layer, shape, seed):
    x = jax.random.normal(jax.random.key(seed), shape, jnp.float32) * 3
    assert layer.init(jax.random.key(0), shape[1:]) == ()
    assert_layer_correct(layer, (), x, seed=seed)


@pytest.mark.parametrize("layer", [fn.Relu, fn.LeakyRelu(0.1)], ids=lambda l: l.name)
def test_kink_matches_autodiff_at_exact_zero(layer):
    # Rule 7: at x == 0 both paths take the left derivative.
    x = jnp.array([[0.0, -1.0, 2.0, 0.0]])
    dy = jnp.ones_like(x)
    _, res = layer.fwd((), x)
    _, dx = layer.bwd(res, dy)
    _, pullback = jax.vjp(lambda x: layer.fwd((), x)[0], x)
    np.testing.assert_array_equal(dx, pullback(dy)[0])
    assert dx[0, 0] == (0.0 if layer is fn.Relu else 0.1)


def test_relu_residual_is_the_mask():
    x = jnp.array([[-1.0, 0.0, 3.0]])
    y, mask = fn.Relu.fwd((), x)
    np.testing.assert_array_equal(mask, [[False, False, True]])
    np.testing.assert_array_equal(y, [[0.0, 0.0, 3.0]])


def test_sigmoid_tanh_match_reference_values():
    x = jnp.array([[-2.0, 0.0, 1.5]])
    np.testing.assert_allclose(fn.apply(fn.Sigmoid, (), x), 1 / (1 + np.exp(-np.asarray(x))), rtol=1e-6)
    np.testing.assert_allclose(fn.apply(fn.Tanh, (), x), np.tanh(np.asarray(x)), rtol=1e-6)
    np.testing.assert_allclose(fn.apply(fn.LeakyRelu(0.5), (), x), [[-1.0, 0.0, 1.5]])


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=lambda l: l.name)
def test_non_float_input_is_a_clear_error(layer):
    with pytest.raises(TypeError, match=rf"{layer.name.split('(')[0]}.*floating-point.*int32"):
        layer.fwd((), jnp.array([[1, 2]], jnp.int32))
