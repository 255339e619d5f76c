"""Second order (fnnet.second_order): hvp = forward-over-manual-reverse equals the
Hessian-vector product of jax.grad in float64 (tolerance 1e-10 relative to the
largest entry: both are exact up to rounding, ~1e-15), and the double-backward
checks pass on correct layers and catch a backward that is right to first order
but not differentiable correctly (a stop_gradient inside the rule)."""

import jax
import jax.numpy as jnp
import pytest

import fnnet as fn
from layer_checks import assert_trees_close

F64 = jnp.float64


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("kind", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])
def test_hvp_equals_jax_grad_hvp(kind):
    if kind == "mlp":
        net = fn.serial(fn.Dense(5), fn.Tanh, fn.Dense(3))
        shape, loss = (4,), fn.losses.softmax_cross_entropy
        y = jnp.array([0, 2, 1])
    else:
        net = fn.serial(fn.Conv2D(2, 2), fn.Softplus, fn.AvgPool2D(2), fn.Flatten, fn.Dense(4),
                        fn.Gelu(), fn.LayerNorm(), fn.Dense(2))
        shape, loss = (4, 4, 1), fn.losses.mean_squared_error
        y = jax.random.normal(jax.random.key(5), (3, 2), F64)
    params = jax.tree.map(lambda a: a.astype(F64), net.init(jax.random.key(0), shape))
    x = jax.random.normal(jax.random.key(1), (3, *shape), F64)
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape, a.dtype), params)

    def both(p, v):
        f = lambda q: loss.fwd(fn.apply(net, q, x), y)[0]
        return fn.hvp(net, loss, p, x, y, v), jax.jvp(jax.grad(f), (p,), (v,))[1]

    got, ref = jax.jit(both)(params, v)
    assert_trees_close(got, ref, 1e-10, "hvp")


def test_double_backward_check_of_a_layer_passes_on_correct_code():
    x = jax.random.normal(jax.random.key(1), (4, 2))
    report = fn.check_layer(fn.Softmax, (), x, double_backward=True, num_directions=1)
    assert report.ok and [l.path for l in report.leaves] == ["dx", "d2 dx", "d2 dy"], report


@pytest.mark.slow
def test_double_backward_check_of_a_model_passes_on_correct_code():
    net = fn.serial(fn.Dense(3), fn.Tanh, fn.Dense(2))
    params = net.init(jax.random.key(0), (2,))
    x, y = jax.random.normal(jax.random.key(1), (4, 2)), jnp.array([0, 1, 1, 0])
    report = fn.check_grads(net, fn.losses.softmax_cross_entropy, params, x, y,
                            double_backward=True, num_directions=1)
    assert report.ok, report
    assert sum(leaf.path.startswith("d2 ") for leaf in report.leaves) == 4


def test_double_backward_catches_a_stop_gradient_in_the_rule():
    # right to first order (passes check_layer), wrong to second: d(bwd)/dx is lost
    good = fn.Tanh
    bad = fn.Layer(good.init, good.fwd,
                   lambda y, dy: ((), dy * (1 - jax.lax.stop_gradient(y) ** 2)))
    x = jax.random.normal(jax.random.key(0), (3, 4))
    assert fn.check_layer(bad, (), x, num_directions=1).ok
    report = fn.check_layer(bad, (), x, double_backward=True, num_directions=1)
    assert not report.ok and [l.path for l in report.failures] == ["d2 dx"], report
    assert "FAIL" in str(report)


def test_hvp_rejects_a_v_of_another_tree():
    net = fn.serial(fn.Dense(2))
    params = net.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match="v must have the tree structure of params"):
        fn.hvp(net, fn.losses.mean_squared_error, params, jnp.ones((1, 2)), jnp.ones((1, 2)),
               params[0])
