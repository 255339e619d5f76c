import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct, assert_trees_close


def randn(shape, seed=0, scale=1.0):
    """Test data from NumPy: jax.random would compile a sampler for every new shape."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def conv_reference(x, w, b, stride, pads, dilation):
    """Cross-correlation written with NumPy loops (what PyTorch's nn.Conv2d computes)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    kh, kw, _, f = w.shape
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, f))
    for i, j, p, q in itertools.product(range(oh), range(ow), range(kh), range(kw)):
        y[:, i, j] += xp[:, i * sh + p * dh, j * sw + q * dw, :] @ w[p, q]
    return y + np.asarray(b)


# (input H, W), kernel, stride, padding, dilation: remainders r > 0, r >= d,
# padding larger than the kernel reach (negative dx pads), asymmetric everything.
CASES = [
    ((6, 6), 3, 2, "SAME", 1),                 # SAME with stride: padding (0, 1)
    ((7, 5), 2, 3, "VALID", 1),                # stride remainder r = 2 > dilation
    ((7, 5), (2, 3), (3, 1), "SAME", (2, 1)),  # asymmetric kernel, stride, dilation
    ((6, 7), 1, 2, 2, 1),                      # padding beyond the kernel: dx pads < 0, r = 1
]


@pytest.mark.parametrize("hw,k,s,p,d", CASES)
def test_conv_three_way(hw, k, s, p, d):
    layer = fn.Conv2D(3, k, stride=s, padding=p, dilation=d)
    x = randn((2, *hw, 2), 0)
    kh, kw = (k, k) if isinstance(k, int) else k
    params = {"w": randn((kh, kw, 2, 3), 1, 0.5), "b": randn((3,), 2)}
    assert_layer_correct(layer, params, x)


GRID = list(itertools.product([1, 2, 3], [1, 2, 3], ["SAME", "VALID", 1], [1, 2]))
FAST_GRID = [(2, 2, "SAME", 2), (3, 2, 2, 2), (2, 3, "VALID", 2), (3, 1, "SAME", 1)]


def _grid_case(k, s, p, d):
    layer = fn.Conv2D(2, k, stride=s, padding=p, dilation=d)
    x = randn((1, 7, 6, 2), k + s)
    params = {"w": randn((k, k, 2, 2), 1), "b": randn((2,), 2)}
    y, res = layer.fwd(params, x)
    dy = randn(y.shape, 3)
    _, pullback = jax.vjp(lambda p, x: layer.fwd(p, x)[0], params, x)
    assert_trees_close(layer.bwd(res, dy), pullback(dy), 1e-5, layer.name)


@pytest.mark.parametrize("k,s,p,d", FAST_GRID)
def test_conv_manual_matches_vjp_more_geometries(k, s, p, d):
    _grid_case(k, s, p, d)


@pytest.mark.slow
@pytest.mark.parametrize("k,s,p,d", GRID)
def test_conv_manual_matches_vjp_full_grid(k, s, p, d):
    _grid_case(k, s, p, d)


@pytest.mark.parametrize("s,p,d", [(1, "SAME", 1), (2, 1, 2), (3, "VALID", 1), ((2, 1), 2, (1, 2))])
def test_conv_forward_matches_numpy_cross_correlation(s, p, d):
    layer = fn.Conv2D(4, (3, 2), stride=s, padding=p, dilation=d)
    x = randn((2, 7, 6, 3), 0)
    params = {"w": randn((3, 2, 3, 4), 1), "b": jnp.arange(4.0)}
    s2, d2 = (s, s) if isinstance(s, int) else s, (d, d) if isinstance(d, int) else d
    if p == "SAME":  # out = ceil(in / s); the odd padding pixel goes at the end
        pads = []
        for n, k, st, dl in zip((7, 6), (3, 2), s2, d2):
            total = max((-(-n // st) - 1) * st + (k - 1) * dl + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
    else:
        pads = [(0, 0)] * 2 if p == "VALID" else [(p, p)] * 2
    ref = conv_reference(x, params["w"], params["b"], s2, pads, d2)
    np.testing.assert_allclose(fn.apply(layer, params, x), ref, rtol=1e-5, atol=1e-5)


def test_conv_matches_pytorch_layout_and_output_size_formula():
    # torch: out = floor((H + 2p - d (k - 1) - 1) / s) + 1; NCHW/OIHW transposed to NHWC/HWIO
    x_nchw = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(np.float32)
    w_oihw = np.random.default_rng(1).standard_normal((5, 3, 3, 3)).astype(np.float32)
    layer = fn.Conv2D(5, 3, stride=2, padding=1, dilation=2)
    params = {"w": jnp.asarray(w_oihw.transpose(2, 3, 1, 0)), "b": jnp.zeros(5)}
    y = fn.apply(layer, params, jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
    assert y.shape == (2, (9 + 2 - 4 - 1) // 2 + 1, (8 + 2 - 4 - 1) // 2 + 1, 5)
    ref = conv_reference(x_nchw.transpose(0, 2, 3, 1), params["w"], 0.0, (2, 2), [(1, 1)] * 2, (2, 2))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_init_layout_and_eval_shape():
    layer = fn.Conv2D(8, (3, 2))
    params = layer.init(jax.random.key(0), (6, 5, 3))
    assert params["w"].shape == (3, 2, 3, 8) and params["b"].shape == (8,)
    np.testing.assert_array_equal(params["b"], 0)
    spec = jax.eval_shape(lambda p, x: fn.apply(layer, p, x), params, jax.ShapeDtypeStruct((4, 6, 5, 3), jnp.float32))
    assert spec.shape == (4, 6, 5, 8)


def test_conv_errors_are_clear():
    layer = fn.Conv2D(4, 3, padding="VALID")
    params = {"w": jnp.zeros((3, 3, 2, 4)), "b": jnp.zeros(4)}
    with pytest.raises(ValueError, match=r"Conv2D\(4, 3, padding='VALID'\).*4-d input in NHWC.*\(6, 6, 2\)"):
        layer.fwd(params, jnp.zeros((6, 6, 2)))
    with pytest.raises(ValueError, match=r"Conv2D.*3 features.*\(1, 6, 6, 3\).*expects 2"):
        layer.fwd(params, jnp.zeros((1, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"Conv2D.*window \(3, 3\) is larger.*\(2, 5\).*\(1, 2, 5, 2\)"):
        layer.fwd(params, jnp.zeros((1, 2, 5, 2)))
    with pytest.raises(ValueError, match=r"Conv2D.*stride must be a positive int.*got 0"):
        fn.Conv2D(4, 3, stride=0)
    with pytest.raises(ValueError, match=r"Conv2D.*kernel_size.*\(3, -1\)"):
        fn.Conv2D(4, (3, -1))
    with pytest.raises(ValueError, match=r"Conv2D.*padding must be 'SAME', 'VALID'"):
        fn.Conv2D(4, 3, padding="same-ish")
    with pytest.raises(ValueError, match=r"Conv2D.*input_shape.*\(height, width, channels\)"):
        layer.init(jax.random.key(0), (6, 6))
    with pytest.raises(TypeError, match=r"Conv2D.*floating-point.*int32"):
        layer.fwd(params, jnp.zeros((1, 6, 6, 2), jnp.int32))


@pytest.mark.slow  # the digits example's test runs the same check on its CNN
def test_small_cnn_check_grads():
    net = fn.serial(fn.Conv2D(3, 3, stride=2), fn.Tanh, fn.Conv2D(2, 2, padding="VALID"),
                    fn.Flatten, fn.Dense(3))
    x = randn((3, 7, 6, 2), 0)
    params = net.init(jax.random.key(1), x.shape[1:])
    report = fn.check_grads(net, fn.losses.softmax_cross_entropy, params, x, jnp.array([0, 2, 1]))
    assert report.ok, str(report)
