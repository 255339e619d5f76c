import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet import losses as L
from layer_checks import assert_loss_correct

SHAPES = [(4, 1), (3, 5), (1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_mse_three_way(shape, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    assert_loss_correct(L.mean_squared_error, jax.random.normal(k1, shape), jax.random.normal(k2, shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_bce_three_way(shape, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    z = 3 * jax.random.normal(k1, shape)
    t = jax.random.uniform(k2, shape)  # soft labels are fine
    assert_loss_correct(L.sigmoid_binary_cross_entropy, z, t)


@pytest.mark.parametrize("n,k", [(4, 3), (1, 2), (6, 10)])
@pytest.mark.parametrize("labels", ["int", "onehot", "probs"])
def test_softmax_ce_three_way(n, k, labels):
    k1, k2 = jax.random.split(jax.random.key(n * k))
    z = 2 * jax.random.normal(k1, (n, k))
    t = {"int": jax.random.randint(k2, (n,), 0, k),
         "onehot": jax.nn.one_hot(jax.random.randint(k2, (n,), 0, k), k),
         "probs": jax.nn.softmax(jax.random.normal(k2, (n, k)))}[labels]
    assert_loss_correct(L.softmax_cross_entropy, z, t)


def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_values_match_numpy_definitions():
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((5, 3)), rng.uniform(size=(5, 3))
    zf, tf = jnp.asarray(z, jnp.float32), jnp.asarray(t, jnp.float32)
    p = _np_sigmoid(z)
    np.testing.assert_allclose(L.mean_squared_error.fwd(zf, tf)[0], np.mean((z - t) ** 2), rtol=1e-5)
    np.testing.assert_allclose(L.sigmoid_binary_cross_entropy.fwd(zf, tf)[0],
                               np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))), rtol=1e-5)
    labels = np.array([0, 2, 1, 1, 0])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(L.softmax_cross_entropy.fwd(zf, jnp.asarray(labels))[0],
                               -np.mean(logp[np.arange(5), labels]), rtol=1e-5)


def test_bce_backward_is_predicted_minus_true_over_n():
    z = jnp.array([[0.3], [-1.2], [2.0], [0.0]])
    t = jnp.array([[0.0], [1.0], [1.0], [0.0]])
    _, res = L.sigmoid_binary_cross_entropy.fwd(z, t)
    np.testing.assert_allclose(L.sigmoid_binary_cross_entropy.bwd(res, 1.0),
                               (jax.nn.sigmoid(z) - t) / 4, rtol=1e-6)


@pytest.mark.parametrize("loss,target,expected", [
    # two of four confidently wrong by a logit of 1e4: mean loss 1e4 / 2
    (L.sigmoid_binary_cross_entropy, jnp.array([[1.0], [0.0], [1.0], [0.0]]), 1e4 / 2),
    # two of four wrong by a logit gap of 2e4: mean loss 2e4 / 2
    (L.softmax_cross_entropy, jnp.array([0, 1, 1, 0]), 2e4 / 2),
])
def test_extreme_logits_stay_finite(loss, target, expected):
    z = jnp.array([[1e4], [1e4], [-1e4], [-1e4]])
    if loss is L.softmax_cross_entropy:
        z = jnp.concatenate([z, -z], axis=1)
    value, res = loss.fwd(z, target)
    grad = loss.bwd(res, 1.0)
    _, auto = jax.value_and_grad(lambda z: loss.fwd(z, target)[0])(z)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(auto))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, auto, rtol=1e-6)


def test_label_shape_n_against_logits_n1_is_a_clear_error():
    with pytest.raises(ValueError, match=r"sigmoid_binary_cross_entropy: prediction shape \(4, 1\) "
                                         r"and target shape \(4,\) must match.*y\[:, None\]"):
        L.sigmoid_binary_cross_entropy.fwd(jnp.zeros((4, 1)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="mean_squared_error.*must match exactly"):
        L.mean_squared_error.fwd(jnp.zeros((4, 2)), jnp.zeros((4, 1)))


def test_softmax_ce_bad_labels():
    with pytest.raises(TypeError, match="must be integers"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="must match"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3), jnp.int32), jnp.zeros((4,), jnp.int32))


def test_softmax_ce_integer_label_column_says_what_to_do():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: integer labels have shape \(4, 1\).*"
                                         r"must be \(4,\).*y\.reshape\(-1\)"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3)), jnp.zeros((4, 1), jnp.int32))
