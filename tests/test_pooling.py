import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy: jax.random would compile a sampler for every new shape."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def pool_reference(x, window, stride, reduce):
    x = np.asarray(x, np.float64)
    (kh, kw), (sh, sw) = window, stride
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i, j in itertools.product(range(oh), range(ow)):
        y[:, i, j] = reduce(x[:, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(1, 2))
    return y


def distinct_input(shape, seed):
    """Distinct values (a random permutation): no ties, so max pooling has a unique argmax."""
    n = int(np.prod(shape))
    return jnp.asarray(np.random.default_rng(seed).permutation(n).reshape(shape) / n - 0.5,
                       jnp.float32)


# (H, W), window, stride: default stride, overlapping windows, uncovered trailing rows
CASES = [((6, 6), 2, None, 0), ((7, 5), 3, 1, 1), ((7, 6), (2, 3), (2, 1), 2)]


@pytest.mark.parametrize("pool,hw,window,stride,seed",
                         [(fn.MaxPool2D, *case) for case in CASES]
                         + [(fn.AvgPool2D, *CASES[1])])
def test_pool_three_way(pool, hw, window, stride, seed):
    layer = pool(window, stride)
    x = distinct_input((2, *hw, 3), seed)
    assert layer.init(jax.random.key(0), x.shape[1:]) == ()
    assert_layer_correct(layer, (), x, seed=seed)


@pytest.mark.parametrize("hw,window,stride,seed", CASES)
def test_pool_forward_matches_numpy(hw, window, stride, seed):
    x = randn((2, *hw, 3), seed)
    win = (window, window) if isinstance(window, int) else window
    st = win if stride is None else (stride, stride) if isinstance(stride, int) else stride
    for layer, reduce in [(fn.MaxPool2D(window, stride), np.max), (fn.AvgPool2D(window, stride), np.mean)]:
        y = fn.apply(layer, (), x)
        spec = jax.eval_shape(lambda x: fn.apply(layer, (), x), x)
        ref = pool_reference(x, win, st, reduce)
        assert y.shape == spec.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_maxpool_ties_go_to_the_first_max_in_row_major_order():
    x = jnp.array([[5.0, 5.0, 1.0, 1.0],
                   [5.0, 5.0, 1.0, 1.0],
                   [0.0, 2.0, 3.0, 3.0],
                   [2.0, 0.0, 3.0, 0.0]])[None, :, :, None]
    layer = fn.MaxPool2D(2)
    y, res = layer.fwd((), x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5.0, 1.0], [2.0, 3.0]])
    _, dx = layer.bwd(res, jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0, 2, 0], [0, 0, 0, 0],
                                                   [0, 3, 4, 0], [0, 0, 0, 0]])
    # jax.grad of this layer's forward follows the same rule (it gathers the argmax)
    _, pullback = jax.vjp(lambda x: layer.fwd((), x)[0], x)
    np.testing.assert_array_equal(pullback(jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None])[0], dx)


def test_maxpool_overlapping_windows_accumulate():
    x = jnp.array([[0.0, 9.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])[None, :, :, None]
    layer = fn.MaxPool2D(2, 1)  # the 9 is the max of both top windows
    y, res = layer.fwd((), x)
    _, dx = layer.bwd(res, jnp.ones_like(y))
    assert dx[0, 0, 1, 0] == 2.0 and float(jnp.sum(dx)) == 4.0


@pytest.mark.parametrize("pool", [fn.MaxPool2D, fn.AvgPool2D], ids=["max", "avg"])
def test_pool_errors_are_clear(pool):
    kind = pool.__name__
    with pytest.raises(ValueError, match=rf"{kind}\(2\).*4-d input in NHWC.*\(2, 6, 6\)"):
        pool(2).fwd((), jnp.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match=rf"{kind}\(3\).*window \(3, 3\) is larger.*\(2, 6\).*VALID"):
        pool(3).fwd((), jnp.zeros((1, 2, 6, 1)))
    with pytest.raises(ValueError, match=rf"{kind}.*stride must be a positive int.*-1"):
        pool(2, -1)
    with pytest.raises(ValueError, match=rf"{kind}.*window must be a positive int.*0"):
        pool(0)
