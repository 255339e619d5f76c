"""fn.make_layer: a layer from fwd and bwd; its checks name the layer and the fix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

KEY = jax.random.key(0)
X = jax.random.normal(KEY, (4, 3))


def scale_fwd(params, x):
    return x * params["a"], (x, params["a"])


def scale_bwd(res, dy):
    x, a = res
    return {"a": jnp.sum(dy * x, axis=0)}, dy * a


SCALE = fn.make_layer("Scale", scale_fwd, scale_bwd,
                      init=lambda key, shape: {"a": jnp.full(shape[-1:], 2.0)})
CUBE = fn.make_layer("Cube", lambda x: (x ** 3, x), lambda x, dy: 3 * x * x * dy)


def test_with_params_and_parameter_free_three_ways():
    net = fn.serial(SCALE, CUBE)
    params = net.init(KEY, (3,))
    assert params == ({"a": params[0]["a"]}, ()) and net.name == "serial(Scale, Cube)"
    assert_layer_correct(net, params, X)


def test_random_layer_gets_the_key_and_needs_one_in_training():
    def noisy(x, *, key=None):
        if key is None:
            return x, None
        m = jax.random.bernoulli(key, 0.5, x.shape)
        return x * m, m

    layer = fn.make_layer("Mask", noisy, lambda m, dy: dy if m is None else dy * m,
                          needs_key=True)
    assert layer.needs_key
    y = fn.apply(layer, (), X, key=KEY)
    assert np.array_equal(y == 0, ~np.asarray(jax.random.bernoulli(KEY, 0.5, X.shape)) | (X == 0))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fn.value_and_grad(fn.serial(layer), fn.losses.mean_squared_error)(((),), X, X)
    assert_layer_correct(layer, (), X, key=KEY)


def test_integer_input_gets_no_gradient():
    lookup = fn.make_layer("Lookup", lambda p, ids: (p["t"][ids], ids),
                           lambda ids, dy: ({"t": jnp.zeros((5, 2)).at[ids].add(dy)},
                                            jnp.zeros(ids.shape)),
                           init=lambda key, shape: {"t": jnp.ones((5, 2))}, input_dtype=jnp.int32)
    params = lookup.init(KEY, ())
    dparams, dx = lookup.bwd(lookup.fwd(params, jnp.array([0, 3, 3]))[1], jnp.ones((3, 2)))
    assert dx is None and dparams["t"][3, 0] == 2


@pytest.mark.parametrize("layer,x,error,match", [
    (fn.make_layer("NoPair", lambda x: x * 2, lambda r, dy: dy), X, TypeError,
     "NoPair: fwd must return a pair (y, residuals)"),
    (fn.make_layer("PerExample", lambda p, x: (x * p["b"], (x, p["b"])),
                   lambda r, dy: ({"b": dy * r[0]}, dy * r[1]),
                   init=lambda k, s: {"b": jnp.ones(())}), X, ValueError,
     "PerExample: bwd returned dparams['b'] of shape (4, 3), but params['b'] has shape (); a "
     "param shared by many entries gets the SUM"),
    (fn.make_layer("WrongTree", scale_fwd, lambda r, dy: ({"A": dy.sum(0)}, dy),
                   init=lambda k, s: {"a": jnp.ones(3)}), X, ValueError,
     "WrongTree: bwd returned dparams with tree"),
    (fn.make_layer("WrongDx", lambda x: (x.sum(-1), x.shape), lambda s, dy: dy), X, ValueError,
     "WrongDx: bwd returned dx of shape (4,), but the input has shape (4, 3)"),
    (fn.make_layer("OneOut", scale_fwd, lambda r, dy: dy, init=lambda k, s: {"a": jnp.ones(3)}),
     X, TypeError, "OneOut: bwd must return a pair (dparams, dx)"),
])
def test_mistakes_are_clear_errors(layer, x, error, match):
    with pytest.raises(error) as info:
        params = layer.init(KEY, x.shape[1:])
        y, res = layer.fwd(params, x)
        layer.bwd(res, jnp.ones_like(y))
    assert match in str(info.value), str(info.value)


def test_constructor_errors():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        fn.make_layer("", scale_fwd, scale_bwd)
    with pytest.raises(TypeError, match="make_layer\\('S'\\): bwd must be a function"):
        fn.make_layer("S", scale_fwd, None)
