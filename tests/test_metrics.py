import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.metrics import accuracy


def test_accuracy_single_logit_thresholds_at_zero():
    logits = jnp.array([[2.0], [-1.0], [0.5], [-3.0]])
    y = jnp.array([[1.0], [0.0], [0.0], [1.0]])
    assert float(accuracy(logits, y)) == 0.5


def test_accuracy_argmax_with_int_labels_and_one_hot():
    logits = jnp.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0]])
    labels = jnp.array([0, 1, 0])
    assert float(accuracy(logits, labels)) == pytest.approx(2 / 3)
    assert float(accuracy(logits, jax.nn.one_hot(labels, 3))) == pytest.approx(2 / 3)


def test_accuracy_shape_errors():
    with pytest.raises(ValueError, match="accuracy: labels must be integers of shape"):
        accuracy(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="accuracy: for one sigmoid output"):
        accuracy(jnp.zeros((4, 1)), jnp.zeros((4,)))


def test_evaluate_matches_the_loss_and_accuracy_by_hand():
    net = fn.serial(fn.Dense(4), fn.Relu, fn.Dense(3))
    params = net.init(jax.random.key(0), (2,))
    x = jax.random.normal(jax.random.key(1), (10, 2))
    y = jnp.arange(10) % 3
    loss = fn.losses.softmax_cross_entropy
    out = fn.evaluate(net, loss, params, x, y)
    logits = np.asarray(fn.apply(net, params, x), np.float64)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    assert out["loss"] == pytest.approx(-np.mean(logp[np.arange(10), np.asarray(y)]), rel=1e-5)
    assert out["accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == np.asarray(y)))
    assert fn.evaluate(net, loss, params, x, y, metrics=("accuracy",)).keys() == {"accuracy"}


@pytest.mark.parametrize("batch_size", [None, 3, 10, 4])
def test_predict_in_batches_equals_one_pass(batch_size):
    net = fn.serial(fn.Dense(4), fn.Tanh, fn.Dense(2))
    params = net.init(jax.random.key(0), (3,))
    x = jax.random.normal(jax.random.key(1), (10, 3))
    got = fn.predict(net, params, x, batch_size=batch_size)
    assert got.shape == (10, 2)
    np.testing.assert_allclose(got, fn.apply(net, params, x), rtol=1e-6, atol=1e-6)


def test_predict_rejects_bad_batch_size():
    net = fn.serial(fn.Dense(1))
    with pytest.raises(ValueError, match="predict: batch_size must be a positive int"):
        fn.predict(net, net.init(jax.random.key(0), (2,)), jnp.zeros((3, 2)), batch_size=0)
