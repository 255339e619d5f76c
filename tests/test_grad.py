import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_trees_close

LOSSES = {
    "mse": (fn.losses.mean_squared_error, lambda k, n, c: jax.random.normal(k, (n, c))),
    "bce": (fn.losses.sigmoid_binary_cross_entropy,
            lambda k, n, c: jax.random.bernoulli(k, 0.5, (n, c)).astype(jnp.float32)),
    "sce": (fn.losses.softmax_cross_entropy, lambda k, n, c: jax.random.randint(k, (n,), 0, c)),
}


def _mlp(depth, act, out):
    layers = []
    for i in range(depth):
        layers += [fn.Dense(6 + i, b_init=fn.initializers.normal(0.2)), act]
    return fn.serial(*layers, fn.Dense(out))


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("depth,act", [(1, fn.Relu), (2, fn.Tanh), (3, fn.Sigmoid), (4, fn.LeakyRelu(0.05))],
                         ids=lambda v: getattr(v, "name", str(v)))
def test_whole_network_manual_equals_autodiff(loss_name, depth, act):
    loss, make_y = LOSSES[loss_name]
    out = 1 if loss_name == "bce" else 3
    net = _mlp(depth, act, out)
    k = jax.random.split(jax.random.key(depth), 3)
    params = net.init(k[0], (4,))
    x, y = jax.random.normal(k[1], (8, 4)), make_y(k[2], 8, out)
    # both under jit (one compile each); jit vs eager is checked per layer and loss
    v1, g1 = jax.jit(fn.value_and_grad(net, loss))(params, x, y)
    v2, g2 = jax.jit(fn.value_and_grad(net, loss, method="autodiff"))(params, x, y)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    assert_trees_close(g1, g2, 1e-5, "grads")


def test_manual_path_never_calls_autodiff(monkeypatch):
    net = _mlp(2, fn.Relu, 1)
    loss = fn.losses.sigmoid_binary_cross_entropy
    params = net.init(jax.random.key(0), (4,))
    x = jax.random.normal(jax.random.key(1), (8, 4))
    y = (x[:, :1] > 0).astype(jnp.float32)
    expected = fn.value_and_grad(net, loss, method="autodiff")(params, x, y)

    def forbidden(*args, **kwargs):
        raise AssertionError("autodiff was called on the manual path")

    for name in ("grad", "vjp", "value_and_grad"):
        monkeypatch.setattr(jax, name, forbidden)
    manual = fn.value_and_grad(net, loss)
    got = manual(params, x, y)
    got_jit = jax.jit(manual)(params, x, y)
    opt = fn.optim.sgd(0.1)
    step = fn.train_step(net, loss, opt)
    step(params, opt.init(params), x, y)
    with pytest.raises(AssertionError, match="autodiff was called"):
        fn.value_and_grad(net, loss, method="autodiff")(params, x, y)
    monkeypatch.undo()
    for g in (got, got_jit):
        assert_trees_close(g, expected, 1e-5, "manual vs autodiff")


def test_unknown_method_is_a_clear_error():
    net = _mlp(1, fn.Relu, 1)
    with pytest.raises(ValueError, match=r"unknown method='backprop'; expected one of \('manual', 'autodiff'\)"):
        fn.value_and_grad(net, fn.losses.mean_squared_error, method="backprop")
    with pytest.raises(ValueError, match="unknown method"):
        fn.train_step(net, fn.losses.mean_squared_error, fn.optim.sgd(0.1), method="numeric")


def _random_layer():
    def fwd(params, x, *, key=None):
        if key is None:
            return x, None
        return x * jax.random.bernoulli(key, 0.5, x.shape), None

    return fn.named("RandomProbe", lambda k, s: (), fwd, lambda r, dy: ((), dy), needs_key=True)


def test_layer_needing_a_key_in_training_without_one_is_a_clear_error():
    net = fn.serial(fn.Dense(3), _random_layer(), fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    x, y = jnp.ones((4, 2)), jnp.ones((4, 1))
    loss = fn.losses.mean_squared_error
    with pytest.raises(ValueError, match=r"needs a PRNG key in training.*key=jax.random.key\(0\)"):
        fn.value_and_grad(net, loss)(params, x, y)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fn.train_step(net, loss, fn.optim.sgd(0.1))(params, fn.optim.sgd(0.1).init(params), x, y)
    fn.value_and_grad(net, loss)(params, x, y, key=jax.random.key(1))  # fine with a key
    fn.apply(net, params, x)  # inference needs no key


def test_same_key_same_randomness_on_both_paths():
    net = fn.serial(fn.Dense(8), _random_layer(), fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    x, y = jax.random.normal(jax.random.key(1), (16, 2)), jnp.ones((16, 1))
    loss = fn.losses.mean_squared_error
    k = jax.random.key(3)
    v1, _ = fn.value_and_grad(net, loss)(params, x, y, key=k)
    v2, _ = fn.value_and_grad(net, loss, method="autodiff")(params, x, y, key=k)
    v3, _ = fn.value_and_grad(net, loss)(params, x, y, key=jax.random.key(4))
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    assert not np.isclose(v1, v3)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
def test_grads_have_the_params_dtypes_in_low_precision(dtype):
    # every layer with params, in 16-bit params and data: grads keep the params' dtypes
    net = fn.serial(fn.Conv2D(3, 3, stride=2), fn.Relu, fn.MaxPool2D(2, 1), fn.LayerNorm(),
                    fn.residual(fn.Dense(3)), fn.Flatten, fn.Dense(2))
    params = jax.tree.map(lambda a: a.astype(dtype), net.init(jax.random.key(0), (7, 7, 2)))
    x = jax.random.normal(jax.random.key(1), (4, 7, 7, 2)).astype(dtype)
    y = jnp.array([0, 1, 1, 0])
    loss = fn.losses.softmax_cross_entropy
    v1, g1 = fn.value_and_grad(net, loss)(params, x, y)
    v2, g2 = fn.value_and_grad(net, loss, method="autodiff")(params, x, y)
    assert v1.dtype == dtype
    for g, p in zip(jax.tree.leaves(g1), jax.tree.leaves(params)):
        assert g.dtype == p.dtype
    assert_trees_close(g1, g2, 2e-2, "16-bit grads")
