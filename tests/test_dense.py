import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


@pytest.mark.parametrize("n_in,features,batch", [(2, 3, 4), (5, 1, 1), (7, 4, 9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_three_way(n_in, features, batch, seed):
    layer = fn.Dense(features, b_init=fn.initializers.normal(0.5))
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = layer.init(k1, (n_in,))
    x = jax.random.normal(k2, (batch, n_in))
    assert_layer_correct(layer, params, x, seed=seed)


def test_dense_params_layout_and_math():
    layer = fn.Dense(3)
    params = layer.init(jax.random.key(0), (2,))
    assert params["w"].shape == (2, 3) and params["b"].shape == (3,)
    assert params["w"].dtype == jnp.float32
    np.testing.assert_array_equal(params["b"], np.zeros(3))
    x = jnp.array([[1.0, 2.0]])
    np.testing.assert_allclose(fn.apply(layer, params, x), np.asarray(x) @ np.asarray(params["w"]), rtol=1e-6)


def test_dense_backward_formulas():
    # dw = x^T dy, db = sum dy, dx = dy w^T, computed independently in NumPy
    rng = np.random.default_rng(0)
    x, w, b, dy = (rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (3, 2), (2,), (5, 2)])
    y, res = fn.Dense(2).fwd({"w": w, "b": b}, jnp.asarray(x))
    dparams, dx = fn.Dense(2).bwd(res, jnp.asarray(dy))
    np.testing.assert_allclose(dparams["w"], x.T @ dy, rtol=1e-5)
    np.testing.assert_allclose(dparams["b"], dy.sum(0), rtol=1e-5)
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-5)


def test_dense_accepts_extra_leading_axes():
    layer = fn.Dense(4)
    params = layer.init(jax.random.key(0), (3,))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    assert_layer_correct(layer, params, x)


def test_default_init_is_glorot_uniform():
    params = fn.Dense(300).init(jax.random.key(0), (200,))
    bound = np.sqrt(6 / (200 + 300))
    w = np.asarray(params["w"])
    assert w.max() <= bound and w.min() >= -bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_feature_mismatch_is_a_clear_error():
    layer = fn.Dense(3)
    params = layer.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"Dense\(3\): input has 5 features.*expects 2"):
        layer.fwd(params, jnp.ones((4, 5)))


def test_rank1_input_is_a_clear_error():
    layer = fn.Dense(3)
    params = layer.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"Dense\(3\): expected a batched input.*got shape \(2,\).*x\[None\]"):
        layer.fwd(params, jnp.ones((2,)))


def test_integer_input_is_a_clear_error():
    layer = fn.Dense(3)
    params = layer.init(jax.random.key(0), (2,))
    with pytest.raises(TypeError, match=r"Dense\(3\): expected a floating-point input, got dtype int32"):
        layer.fwd(params, jnp.ones((4, 2), jnp.int32))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_bad_features(bad):
    with pytest.raises(ValueError, match="Dense: features must be a positive int"):
        fn.Dense(bad)


def test_errors_fire_under_jit():
    layer = fn.Dense(3)
    params = layer.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match="Dense"):
        jax.jit(layer.fwd)(params, jnp.ones((4, 5)))
