import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet import metrics as M
from fnnet.metrics import accuracy, top_k_accuracy


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


# --- the metric registry: top-k, regression, binary, user functions ---------------------

def test_top_k_accuracy():
    logits = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    y = jnp.array([1, 0, 2])  # ranks: 2nd, 4th, tied first (a tie counts in its favour)
    got = [float(top_k_accuracy(logits, y, k)) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(got, [1 / 3, 2 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(top_k_accuracy(logits, jax.nn.one_hot(y, 4), 2), 2 / 3)
    assert float(fn.metrics.lookup("top_2_accuracy")(logits, y)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"top_2_accuracy: labels must be integers of shape"):
        top_k_accuracy(logits, jnp.zeros((3, 2)), 2)


def test_regression_and_binary_metrics_match_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(20, 1)), rng.normal(size=(20, 1))
    z = rng.normal(size=(50, 1))
    y = (rng.random((50, 1)) < 0.4).astype(np.float32)
    two = np.concatenate([np.zeros_like(z), z], axis=1)
    names = ("precision", "recall", "f1")

    @jax.jit  # one compilation for all of them
    def values(p, t, z, y, two):
        return (M.mse(p, t), M.mae(p, t),
                [(M.lookup(n)(z, y), M.lookup(n)(two, y[:, 0].astype(jnp.int32)),
                  M.lookup(n)(z, 2 * y - 1)) for n in names],
                M.precision(-jnp.ones((4, 1)), jnp.ones((4, 1))))

    mse, mae, binary, no_positive = values(p, t, z, y, two)
    assert float(mse) == pytest.approx(np.mean((p - t) ** 2), rel=1e-6)
    assert float(mae) == pytest.approx(np.mean(np.abs(p - t)), rel=1e-6)
    pred, true = z > 0, y > 0.5
    tp, fp, fn_ = np.sum(pred & true), np.sum(pred & ~true), np.sum(~pred & true)
    wants = (tp / (tp + fp), tp / (tp + fn_), 2 * tp / (2 * tp + fp + fn_))
    for name, want, got in zip(names, wants, binary):
        # one logit with 0/1 labels; two-class logits (n, 2), class 1 positive; -1/+1 labels
        np.testing.assert_allclose(got, [want] * 3, rtol=1e-6, err_msg=name)
    assert float(no_positive) == 0.0  # nothing predicted positive: precision 0, not NaN
    with pytest.raises(ValueError, match=r"mse: prediction shape \(20, 1\) and target shape \(20,\)"):
        M.mse(p, t[:, 0])
    with pytest.raises(ValueError, match=r"f1: a binary metric needs one output"):
        M.f1(jnp.zeros((4, 3)), jnp.zeros((4,), jnp.int32))


def test_metric_names_and_functions_are_checked():
    def mean_logit(pred, y):
        return jnp.mean(pred)

    named = M.named_metric("logit_max", lambda p, y: jnp.max(p))
    metrics = M.check_metrics(("loss", "top_2_accuracy", "f1", mean_logit, named), "evaluate")
    assert [M.metric_name(m) for m in metrics] == ["loss", "top_2_accuracy", "f1", "mean_logit",
                                                   "logit_max"]
    # evaluate and fit with these: tests/test_losses.py
    # test_masked_target_goes_through_fit_and_evaluate (one compiled fit and evaluate)
    with pytest.raises(ValueError, match=r"evaluate: unknown metric 'top_0_accuracy'.*'f1'"):
        M.check_metrics(("top_0_accuracy",), "evaluate")
    with pytest.raises(ValueError, match=r"needs its own name, not '<lambda>'.*named_metric"):
        M.check_metrics((lambda p, y: 0.0,))
    with pytest.raises(ValueError, match=r"named_metric: name must be a new"):
        M.named_metric("accuracy", mean_logit)
