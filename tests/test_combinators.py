import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def test_serial_params_are_a_tuple_per_layer():
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    assert isinstance(params, tuple) and len(params) == 3 and params[1] == ()
    assert params[0]["w"].shape == (2, 3) and params[2]["w"].shape == (3, 1)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("act", [fn.Relu, fn.Tanh, fn.Sigmoid, fn.LeakyRelu(0.1)], ids=lambda a: a.name)
def test_serial_three_way(depth, act):
    layers = []
    for _ in range(depth):
        layers += [fn.Dense(5, b_init=fn.initializers.normal(0.3)), act]
    net = fn.serial(*layers, fn.Dense(2))
    params = net.init(jax.random.key(depth), (4,))
    x = jax.random.normal(jax.random.key(10 + depth), (6, 4))
    assert_layer_correct(net, params, x)


def test_serial_chains_shapes_and_backward_order():
    net = fn.serial(fn.Dense(4), fn.Sigmoid, fn.Dense(3), fn.Tanh)
    params = net.init(jax.random.key(0), (2,))
    x = jnp.ones((5, 2))
    y, res = net.fwd(params, x)
    assert y.shape == (5, 3) and len(res) == 4
    dparams, dx = net.bwd(res, jnp.ones_like(y))
    assert jax.tree.structure(dparams) == jax.tree.structure(params) and dx.shape == x.shape


def test_serial_splits_the_key_per_layer():
    seen = []

    def probe_fwd(params, x, *, key=None):
        seen.append(key)
        return x, None

    probe = fn.named("Probe", lambda k, s: (), probe_fwd, lambda r, dy: ((), dy), needs_key=True)
    net = fn.serial(probe, probe)
    assert net.needs_key
    net.fwd(((), ()), jnp.ones((1, 2)), key=jax.random.key(0))
    k1, k2 = jax.random.split(jax.random.key(0))
    assert jnp.array_equal(jax.random.key_data(seen[0]), jax.random.key_data(k1))
    assert jnp.array_equal(jax.random.key_data(seen[1]), jax.random.key_data(k2))
    seen.clear()
    net.fwd(((), ()), jnp.ones((1, 2)))
    assert seen == [None, None]


def test_serial_error_names_the_position():
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"Dense\(3\): input has 5 features.*\[layer 0 \(Dense\(3\)\) of serial\]"):
        net.fwd(params, jnp.ones((4, 5)))


def test_serial_rejects_non_layers_and_wrong_params():
    with pytest.raises(TypeError, match=r"argument 1 .*not a fnnet Layer.*call it"):
        fn.serial(fn.Dense(3), fn.Dense)
    with pytest.raises(ValueError, match="at least one layer"):
        fn.serial()
    net = fn.serial(fn.Dense(3), fn.Relu)
    with pytest.raises(ValueError, match="params must be a tuple of 2 entries"):
        net.fwd(({"w": jnp.ones((2, 3)), "b": jnp.ones(3)},), jnp.ones((1, 2)))


def test_nested_serial():
    inner = fn.serial(fn.Dense(4), fn.Tanh)
    net = fn.serial(inner, fn.Dense(2))
    params = net.init(jax.random.key(0), (3,))
    assert isinstance(params[0], tuple)
    assert_layer_correct(net, params, jax.random.normal(jax.random.key(1), (2, 3)))


def test_serial_keeps_jax_errors_whose_constructor_takes_no_message():
    # JAX's tracer errors are TypeError subclasses built from a tracer, not a message:
    # serial must re-raise them as they are, not replace them with an AttributeError.
    def branchy_fwd(params, x, *, key=None):
        return (x if x.sum() > 0 else -x), None  # Python `if` on a traced value

    branchy = fn.named("Branchy", lambda k, s: (), branchy_fwd, lambda r, dy: ((), dy))
    net = fn.serial(fn.Dense(2), branchy)
    params = (fn.Dense(2).init(jax.random.key(0), (3,)), ())
    with pytest.raises(jax.errors.TracerBoolConversionError):
        jax.jit(net.fwd)(params, jnp.ones((4, 3)))
    with pytest.raises(jax.errors.TracerBoolConversionError):
        net.init(jax.random.key(0), (3,))
