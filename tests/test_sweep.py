import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
Y = jnp.array([[0], [1], [1], [0]], jnp.float32)
BCE = fn.losses.sigmoid_binary_cross_entropy
NET = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
SGD = fn.optim.sgd(0.1)


def separate_fit(key, opt, **kw):
    """What the sweep documents that run i does."""
    init_key, fit_key = jax.random.split(key)
    return fn.fit(NET, BCE, opt, NET.init(init_key, (2,)), X, Y, key=fit_key, **kw)


def assert_tree_close(a, b, **tol):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **tol), a, b)


def test_seed_sweep_equals_separate_fits():
    keys = jax.random.split(jax.random.key(0), 4)
    params, state, h = fn.sweep(NET, BCE, SGD, X, Y, keys=keys, epochs=300)
    assert h["loss"].shape == (4, 300)
    assert jax.tree.leaves(params)[0].shape[0] == 4
    for i in range(4):
        p_i, s_i, h_i = separate_fit(keys[i], SGD, epochs=300)
        np.testing.assert_allclose(h["loss"][i], h_i["loss"], rtol=2e-5, atol=1e-6)
        assert_tree_close(jax.tree.map(lambda a: a[i], params), p_i, rtol=2e-5, atol=1e-6)
        assert int(state[0].count[i]) == 300


def make_adam(learning_rate, b1):
    return fn.optim.adam(learning_rate, b1=b1)


def test_hyperparameter_sweep_equals_separate_fits_with_minibatches():
    keys = jax.random.split(jax.random.key(1), 2)
    lrs, b1s = jnp.array([0.01, 0.1]), jnp.array([0.9, 0.0])
    _, _, h = fn.sweep(NET, BCE, make_adam, X, Y, keys=keys, hparams={"learning_rate": lrs, "b1": b1s},
                       epochs=30, batch_size=2)
    for i in range(2):
        _, _, h_i = separate_fit(keys[i], make_adam(float(lrs[i]), float(b1s[i])), epochs=30, batch_size=2)
        np.testing.assert_allclose(h["loss"][i], h_i["loss"], rtol=2e-5, atol=1e-6)


def test_one_shared_key_and_int_seeds():
    lrs = jnp.array([0.0, 0.1])
    params, _, h = fn.sweep(NET, BCE, fn.optim.sgd, X, Y, keys=jax.random.key(3),
                            hparams={"learning_rate": lrs}, epochs=20)
    assert h["loss"].shape == (2, 20)
    assert np.all(h["loss"][0] == h["loss"][0, 0])     # lr 0: nothing moves
    assert h["loss"][1, -1] < h["loss"][0, -1]         # same init, lr 0.1 learns
    _, _, h2 = fn.sweep(NET, BCE, SGD, X, Y, keys=[0, 1, 2], epochs=20)
    _, _, h_1 = separate_fit(jax.random.key(1), SGD, epochs=20)
    np.testing.assert_allclose(h2["loss"][1], h_1["loss"], rtol=2e-5)


def test_sweep_compiles_once():
    calls = []

    def make(learning_rate):
        calls.append(1)
        return fn.optim.sgd(learning_rate)

    for lrs in ([0.1, 0.2], [0.3, 0.4]):
        fn.sweep(NET, BCE, make, X, Y, keys=jax.random.split(jax.random.key(0), 2),
                 hparams={"learning_rate": jnp.array(lrs)}, epochs=10)
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(keys=jax.random.split(jax.random.key(0), 3), hparams={"learning_rate": jnp.ones(2)}),
     ValueError, "sweep: every swept argument needs the same number of runs"),
    (dict(keys=jax.random.key(0), hparams={"learning_rate": jnp.ones((2, 2))}),
     ValueError, r"sweep: hparams\['learning_rate'\] must be 1-D"),
    (dict(keys=[0.5, 1.5]), TypeError, "sweep: keys must be a key array"),
    (dict(keys=jax.random.key(0)), ValueError, "sweep: one shared key and no hparams is a single run"),
])
def test_sweep_argument_errors(kwargs, err, match):
    opt = fn.optim.sgd if "hparams" in kwargs else SGD
    with pytest.raises(err, match=match):
        fn.sweep(NET, BCE, opt, X, Y, epochs=5, **kwargs)


def test_built_optimizer_with_hparams_is_an_error():
    with pytest.raises(ValueError, match="sweep: hparams were given but optimizer is already built"):
        fn.sweep(NET, BCE, SGD, X, Y, keys=jax.random.key(0), hparams={"learning_rate": jnp.ones(2)},
                 epochs=5)


def test_raw_uint32_keys_are_key_data_not_seeds():
    lrs = {"learning_rate": jnp.array([0.05, 0.1])}
    raw = jax.random.PRNGKey(42)                      # uint32 (2,): ONE shared key
    _, _, h = fn.sweep(NET, BCE, fn.optim.sgd, X, Y, keys=raw, hparams=lrs, epochs=10)
    _, _, h_ref = fn.sweep(NET, BCE, fn.optim.sgd, X, Y, keys=jax.random.wrap_key_data(raw),
                           hparams=lrs, epochs=10)
    np.testing.assert_array_equal(h["loss"], h_ref["loss"])
    split = jax.random.split(raw, 3)                  # uint32 (3, 2): three keys
    _, _, h3 = fn.sweep(NET, BCE, SGD, X, Y, keys=split, epochs=10)
    _, _, h_1 = separate_fit(jax.random.wrap_key_data(split[1]), SGD, epochs=10)
    np.testing.assert_allclose(h3["loss"][1], h_1["loss"], rtol=2e-5)
