import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import initializers as I

SHAPE = (400, 300)  # fan_in 400, fan_out 300


@pytest.mark.parametrize("init,expected_std", [
    (I.normal(0.5), 0.5),
    (I.uniform(0.3), 0.3 / np.sqrt(3)),
    (I.glorot_uniform, np.sqrt(2 / 700)),
    (I.glorot_normal, np.sqrt(2 / 700)),
    (I.he_uniform, np.sqrt(2 / 400)),
    (I.he_normal, np.sqrt(2 / 400)),
    (I.lecun_normal, np.sqrt(1 / 400)),
])
def test_variance(init, expected_std):
    w = np.asarray(init(jax.random.key(0), SHAPE, jnp.float32))
    assert w.shape == SHAPE and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 * expected_std * 10
    assert w.std() == pytest.approx(expected_std, rel=0.02)


@pytest.mark.parametrize("init,bound", [(I.glorot_uniform, np.sqrt(6 / 700)), (I.he_uniform, np.sqrt(6 / 400)),
                                        (I.uniform(0.3), 0.3)])
def test_uniform_bounds(init, bound):
    w = np.asarray(init(jax.random.key(1), SHAPE))
    assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound


def test_conv_fans():
    assert I.fans((3, 3, 16, 32)) == (144, 288)
    with pytest.raises(ValueError, match="at least 2 axes"):
        I.fans((5,))


def test_zeros_ones_constant_and_keys():
    k = jax.random.key(0)
    np.testing.assert_array_equal(I.zeros(k, (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(I.ones(k, (2,)), np.ones(2))
    np.testing.assert_array_equal(I.constant(0.5)(k, (2,)), [0.5, 0.5])
    a, b = I.he_normal(jax.random.key(0), (3, 3)), I.he_normal(jax.random.key(1), (3, 3))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, I.he_normal(jax.random.key(0), (3, 3)))
    assert I.normal(1.0)(k, (2, 2), jnp.bfloat16).dtype == jnp.bfloat16
