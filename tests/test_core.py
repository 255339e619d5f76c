import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn


def _net_and_data(seed=0):
    net = fn.serial(fn.Dense(4), fn.Tanh, fn.Dense(2))
    params = net.init(jax.random.key(seed), (3,))
    x = jax.random.normal(jax.random.key(seed + 1), (5, 3))
    return net, params, x


def test_layer_is_a_namedtuple_of_three_functions():
    init, fwd, bwd = fn.Dense(3)
    assert callable(init) and callable(fwd) and callable(bwd)
    assert fn.Dense(3).name == "Dense(3)" and fn.Relu.name == "Relu"
    assert "Dense(3)" in repr(fn.Dense(3))


def test_apply_is_fwd_output():
    net, params, x = _net_and_data()
    np.testing.assert_array_equal(fn.apply(net, params, x), net.fwd(params, x)[0])


def test_vjp_mirrors_jax_vjp():
    net, params, x = _net_and_data()
    y, pullback = fn.vjp(net, params, x)
    y_ref, pullback_ref = jax.vjp(lambda p, x: net.fwd(p, x)[0], params, x)
    dy = jax.random.normal(jax.random.key(7), y.shape)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    got, ref = pullback(dy), pullback_ref(dy)
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_custom_vjp_uses_the_hand_written_backward():
    net, params, x = _net_and_data()
    # A layer whose bwd is deliberately scaled by 3: jax.grad must see the scaling,
    # proving it used bwd and not differentiated fwd.
    tripled = fn.Layer(net.init, net.fwd, lambda r, dy: jax.tree.map(lambda g: 3 * g, net.bwd(r, dy)))
    f, f3 = fn.custom_vjp(net), fn.custom_vjp(tripled)
    loss = lambda f: (lambda p, x: jnp.sum(jnp.sin(f(p, x))))
    g = jax.grad(loss(f), argnums=(0, 1))(params, x)
    g3 = jax.grad(loss(f3), argnums=(0, 1))(params, x)
    ref = jax.grad(loss(lambda p, x: net.fwd(p, x)[0]), argnums=(0, 1))(params, x)
    for a, b, c in zip(jax.tree.leaves(g), jax.tree.leaves(g3), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, 3 * c, rtol=1e-5, atol=1e-6)
    # works under jit and inside a larger program
    gj = jax.jit(jax.grad(loss(f)))(params, x)
    for a, b in zip(jax.tree.leaves(gj), jax.tree.leaves(g[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_custom_vjp_with_key_and_reverse_mode_only():
    net, params, x = _net_and_data()
    f = fn.custom_vjp(net)
    np.testing.assert_allclose(f(params, x, jax.random.key(0)), fn.apply(net, params, x), rtol=1e-6)
    g = jax.grad(lambda p: jnp.sum(f(p, x, jax.random.key(0))))(params)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    with pytest.raises(TypeError):
        jax.jvp(lambda x: f(params, x), (x,), (x,))


def test_static_residual_node_has_no_leaves():
    s = fn.Static((2, 3))
    assert jax.tree.leaves({"a": s, "b": jnp.ones(2)})[0].shape == (2,)
    assert len(jax.tree.leaves(s)) == 0 and s == fn.Static((2, 3)) and s.value == (2, 3)
    out = jax.jit(lambda t: t)({"s": s, "x": jnp.ones(1)})
    assert out["s"].value == (2, 3)


def test_hand_made_layer_name_defaults_to_fwd_name():
    def my_fwd(params, x, *, key=None):
        return x, None

    layer = fn.Layer(lambda k, s: (), my_fwd, lambda r, dy: ((), dy))
    assert layer.name == "my_fwd" and not layer.needs_key
