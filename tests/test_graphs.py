"""Graph combinators: parallel, FanOut, FanInSum, FanInConcat (and nesting), three ways."""

import jax
import jax.numpy as jnp
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

K = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (3, 4))


def test_fan_out_sums_cotangents():
    y, res = fn.FanOut(3).fwd((), X)
    assert len(y) == 3 and all(a is X for a in y)
    _, dx = fn.FanOut(3).bwd(res, (X, 2 * X, -X))
    assert jnp.allclose(dx, 2 * X)


def test_fan_in_sum_and_concat_backwards():
    a, b = X, 2 * X[:, :2]
    y, res = fn.FanInConcat().fwd((), (a, b))
    assert y.shape == (3, 6)
    _, (da, db) = fn.FanInConcat().bwd(res, jnp.arange(18.0).reshape(3, 6))
    assert jnp.array_equal(da, jnp.arange(18.0).reshape(3, 6)[:, :4])
    assert jnp.array_equal(db, jnp.arange(18.0).reshape(3, 6)[:, 4:])
    _, (d1, d2) = fn.FanInSum.bwd(fn.FanInSum.fwd((), (X, X))[1], X)
    assert d1 is X and d2 is X


INCEPTION = fn.serial(fn.Dense(5), fn.FanOut(3),
                      fn.parallel(fn.Dense(3), fn.serial(fn.Dense(2), fn.Tanh), fn.Identity),
                      fn.FanInConcat(-1), fn.Dense(2))
# a skip around a sub-network, nested inside another branch (graphs at depth)
NESTED = fn.serial(fn.FanOut(2),
                   fn.parallel(fn.serial(fn.FanOut(2), fn.parallel(fn.Dense(4), fn.Identity),
                                         fn.FanInSum), fn.Dense(4)),
                   fn.FanInSum, fn.Sigmoid)


@pytest.mark.parametrize("net", [INCEPTION, NESTED], ids=["inception", "nested"])
def test_graph_models_three_ways(net):
    params = net.init(K, (4,))
    assert_layer_correct(net, params, X)


def test_siamese_two_inputs_through_parallel():
    tower = fn.serial(fn.Dense(3), fn.Tanh)
    net = fn.serial(fn.parallel(tower, tower), fn.FanInConcat(), fn.Dense(1))
    params = net.init(K, ((4,), (4,)))
    assert fn.output_shape(net, params, ((4,), (4,))) == (1,)
    assert_layer_correct(net, params, (X, X[::-1]))


def test_conv_unet_skip_concatenates_channels():
    net = fn.serial(fn.FanOut(2), fn.parallel(fn.Conv2D(3, (3, 3)), fn.Identity),
                    fn.FanInConcat(axis=3))
    x = jax.random.normal(K, (2, 4, 4, 2))
    params = net.init(K, (4, 4, 2))
    assert fn.output_shape(net, params, (4, 4, 2)) == (4, 4, 5)
    assert_layer_correct(net, params, x)


@pytest.mark.parametrize("build, x, match", [
    (lambda: fn.FanInSum.fwd((), (X, X[:, :2])), None, "FanInSum: inputs have shapes"),
    (lambda: fn.FanInSum.fwd((), X), None, "FanInSum: expected a tuple"),
    (lambda: fn.FanInConcat(0).fwd((), (X, X)), None, "batch axis"),
    (lambda: fn.FanInConcat().fwd((), (X, X[:2])), None, "all axes but -1 must match"),
    (lambda: fn.parallel(fn.Dense(2), fn.Dense(2)).init(K, (4,)), None, "FanOut\\(2\\)"),
    (lambda: fn.FanOut(0), None, "FanOut: num must be a positive int"),
])
def test_graph_errors_name_the_combinator(build, x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_graph_trains_manual_equals_autodiff():
    loss = fn.losses.mean_squared_error
    params = INCEPTION.init(K, (4,))
    y = jnp.ones((3, 2))
    vm, gm = jax.jit(fn.value_and_grad(INCEPTION, loss))(params, X, y)
    va, ga = jax.jit(fn.value_and_grad(INCEPTION, loss, method="autodiff"))(params, X, y)
    assert jnp.allclose(vm, va)
    for a, b in zip(jax.tree.leaves(gm), jax.tree.leaves(ga)):
        assert jnp.allclose(a, b, rtol=1e-5, atol=1e-6)
