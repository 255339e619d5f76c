import math

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


@pytest.mark.parametrize("layer", [a for a in ACTIVATIONS if a is not fn.Identity],
                         ids=lambda l: l.name)
def test_non_float_input_is_a_clear_error(layer):
    with pytest.raises(TypeError, match=rf"{layer.name.split('(')[0]}.*floating-point.*int32"):
        layer.fwd((), jnp.array([[1, 2]], jnp.int32))


def test_identity_passes_any_dtype_and_integers_get_no_gradient():
    """A mask or ids ride through Identity beside the data (parallel(..., Identity))."""
    for x in (jnp.array([[1, 2]], jnp.int32), jnp.array([[True, False]])):
        y, res = fn.Identity.fwd((), x)
        assert y is x and fn.Identity.bwd(res, None) == ((), None)
    y, res = fn.Identity.fwd((), jnp.ones((1, 2)))
    assert fn.Identity.bwd(res, jnp.full((1, 2), 3.0))[1].tolist() == [[3.0, 3.0]]


# --- Gelu, Elu, Softplus, Silu, Softmax, LogSoftmax ---------------------------

NEW_ACTIVATIONS = [fn.Gelu(), fn.Gelu(approximate=True), fn.Elu(), fn.Elu(0.5), fn.Softplus,
                   fn.Silu, fn.Softmax, fn.LogSoftmax]


@pytest.mark.parametrize("layer", NEW_ACTIVATIONS, ids=lambda l: l.name)
def test_new_activation_three_way(layer):
    x = jax.random.normal(jax.random.key(3), (3, 5), jnp.float32) * 3
    assert layer.init(jax.random.key(0), (5,)) == ()
    assert_layer_correct(layer, (), x)


def _erf(v):
    return np.vectorize(math.erf)(v)


def test_new_activations_match_pytorch_formulas_in_numpy():
    x = np.array([[-30.0, -3.0, -0.5, 0.0, 0.7, 2.0, 30.0]], np.float32)
    x64 = x.astype(np.float64)
    c = math.sqrt(2 / math.pi)
    refs = {
        "Gelu(approximate=False)": 0.5 * x64 * (1 + _erf(x64 / math.sqrt(2))),  # nn.GELU()
        "Gelu(approximate=True)": 0.5 * x64 * (1 + np.tanh(c * (x64 + 0.044715 * x64 ** 3))),
        "Elu(1)": np.where(x64 > 0, x64, np.expm1(x64)),                        # nn.ELU()
        "Elu(0.5)": np.where(x64 > 0, x64, 0.5 * np.expm1(x64)),
        "Softplus": np.log1p(np.exp(-np.abs(x64))) + np.maximum(x64, 0),
        "Silu": x64 / (1 + np.exp(-x64)),
        "Softmax": np.exp(x64 - x64.max()) / np.exp(x64 - x64.max()).sum(),
        "LogSoftmax": x64 - x64.max() - np.log(np.exp(x64 - x64.max()).sum()),
    }
    for layer in NEW_ACTIVATIONS:
        np.testing.assert_allclose(fn.apply(layer, (), jnp.asarray(x)), refs[layer.name],
                                   rtol=1e-5, atol=1e-6, err_msg=layer.name)


@pytest.mark.parametrize("layer", NEW_ACTIVATIONS, ids=lambda l: l.name)
def test_new_activations_are_finite_for_extreme_inputs(layer):
    x = jnp.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], jnp.float32)
    y, res = layer.fwd((), x)
    _, dx = layer.bwd(res, jnp.ones_like(y))
    _, pullback = jax.vjp(lambda x: layer.fwd((), x)[0], x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)), (y, dx)
    np.testing.assert_allclose(dx, pullback(jnp.ones_like(y))[0], rtol=1e-5, atol=1e-6)
    if layer.name not in ("Softmax", "LogSoftmax"):  # elementwise: derivative 0 / 1 far out
        _, res = layer.fwd((), jnp.array([[-1e30, 1e30]], jnp.float32))
        np.testing.assert_allclose(layer.bwd(res, jnp.ones((1, 2)))[1], [[0.0, 1.0]], atol=1e-30)


def test_softplus_and_elu_derivatives():
    x = jnp.array([[-2.0, 0.0, 3.0]])
    _, s = fn.Softplus.fwd((), x)
    np.testing.assert_allclose(fn.Softplus.bwd(s, jnp.ones_like(x))[1], 1 / (1 + np.exp(-np.asarray(x))), rtol=1e-6)
    elu = fn.Elu(0.5)  # the left derivative at 0 is alpha, as jax.grad of the forward
    _, dx = elu.bwd(elu.fwd((), x)[1], jnp.ones_like(x))
    np.testing.assert_allclose(dx, [[0.5 * np.exp(-2.0), 0.5, 1.0]], rtol=1e-6)
    _, pullback = jax.vjp(lambda x: elu.fwd((), x)[0], x)
    np.testing.assert_allclose(pullback(jnp.ones_like(x))[0], dx, rtol=1e-6)


@pytest.mark.parametrize("layer", [fn.Softmax, fn.LogSoftmax], ids=lambda l: l.name)
def test_softmax_needs_a_class_axis(layer):
    with pytest.raises(ValueError, match=rf"{layer.name}.*\(batch, classes\).*\(4,\)"):
        layer.fwd((), jnp.ones(4))


@pytest.mark.parametrize("layer", NEW_ACTIVATIONS, ids=lambda l: l.name)
def test_new_activation_non_float_input_is_a_clear_error(layer):
    with pytest.raises(TypeError, match=rf"{layer.name.split('(')[0]}.*floating-point.*int32"):
        layer.fwd((), jnp.array([[1, 2]], jnp.int32))
