"""ConvTranspose2D: three-way checks, a NumPy scatter reference (always runs), PyTorch's
conv_transpose2d (when installed), "SAME" = jax.lax.conv_transpose's crop, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def scatter_reference(x, w, b, stride, crop):
    """Every input pixel adds x * kernel at (i s, j s) into the full output, then crop."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, hh, ww, _ = x.shape
    kh, kw, _, f = w.shape
    (sh, sw), ((t, bo), (le, ri)) = stride, crop
    full = np.zeros((n, (hh - 1) * sh + kh, (ww - 1) * sw + kw, f))
    for i, j, p, q in itertools.product(range(hh), range(ww), range(kh), range(kw)):
        full[:, i * sh + p, j * sw + q] += x[:, i, j] @ w[p, q]
    return full[:, t:full.shape[1] - bo, le:full.shape[2] - ri] + np.asarray(b)


# kernel, stride, padding: stride > kernel (gaps), overlapping windows, a crop,
# asymmetric kernel and stride in SAME mode (one crop is negative: extra rows)
CASES = [(2, 3, "VALID"), (3, 2, 1), ((3, 2), (2, 1), "SAME"), (1, 3, "SAME")]


def _three_way(cases):
    """Geometries side by side (parallel branches: one compile, every branch's kernel
    and input its own rows in the report)."""
    net = fn.parallel(*[fn.ConvTranspose2D(2, k, stride=s, padding=p) for k, s, p in cases])
    x = randn((2, 3, 4, 2), 0)
    params = net.init(jax.random.key(1), ((3, 4, 2),) * len(cases))
    assert_layer_correct(net, params, (x,) * len(cases))


def test_three_way_gaps_and_asymmetric_same():
    _three_way(CASES[0::2])


@pytest.mark.slow
def test_three_way_crop_and_negative_crop():
    _three_way(CASES[1::2])


@pytest.mark.parametrize("k,s,p", [(2, 3, "VALID"), (3, 2, 1), ((3, 2), (2, 1), 0)])
def test_forward_matches_numpy_scatter(k, s, p):
    kh, kw = (k, k) if isinstance(k, int) else k
    s2 = (s, s) if isinstance(s, int) else s
    layer = fn.ConvTranspose2D(4, k, stride=s, padding=p)
    x, w = randn((2, 4, 3, 3), 2), randn((kh, kw, 3, 4), 3)
    params = {"w": w, "b": jnp.arange(4.0)}
    c = 0 if p == "VALID" else p
    ref = scatter_reference(x, w, params["b"], s2, ((c, c), (c, c)))
    y = fn.apply(layer, params, x)
    assert y.shape == ref.shape == (2, 3 * s2[0] + kh - 2 * c, 2 * s2[1] + kw - 2 * c, 4)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,s", [(2, 3), pytest.param(4, 2, marks=pytest.mark.slow),
                                 pytest.param((3, 2), (2, 1), marks=pytest.mark.slow)])
def test_same_gives_h_times_s_and_crops_like_lax_conv_transpose(k, s):
    layer = fn.ConvTranspose2D(4, k, stride=s, padding="same")
    params = layer.init(jax.random.key(0), (5, 4, 3))
    params["b"] = jnp.arange(4.0)
    x = randn((2, 5, 4, 3), 4)
    s2 = (s, s) if isinstance(s, int) else s
    # lax.conv_transpose without transpose_kernel correlates with the kernel as given:
    # the flipped kernel gives the scatter (PyTorch) convention used here
    ref = jax.lax.conv_transpose(x, params["w"][::-1, ::-1], s2, "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["b"]
    y = fn.apply(layer, params, x)
    assert y.shape == (2, 5 * s2[0], 4 * s2[1], 4)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 3, 0), pytest.param(3, 2, 0, marks=pytest.mark.slow)])
def test_matches_pytorch_conv_transpose2d(k, s, p):
    torch = pytest.importorskip("torch")
    layer = fn.ConvTranspose2D(4, k, stride=s, padding="VALID" if p == 0 else p)
    x, w, b = randn((2, 4, 3, 3), 5), randn((k, k, 3, 4), 6), randn((4,), 7)
    yt = torch.nn.functional.conv_transpose2d(
        torch.tensor(np.asarray(x, np.float64).transpose(0, 3, 1, 2)),
        torch.tensor(np.asarray(w, np.float64).transpose(2, 3, 0, 1)),    # w.permute(2, 3, 0, 1)
        torch.tensor(np.asarray(b, np.float64)), stride=s, padding=p)
    y = fn.apply(layer, {"w": w, "b": b}, x)
    np.testing.assert_allclose(y, yt.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_errors_are_clear():
    layer = fn.ConvTranspose2D(4, 3, padding=2)
    params = {"w": jnp.zeros((3, 3, 2, 4)), "b": jnp.zeros(4)}
    with pytest.raises(ValueError, match=r"ConvTranspose2D\(4, 3, padding=2\): expected a 4-d input in NHWC"):
        layer.fwd(params, jnp.zeros((6, 6, 2)))
    with pytest.raises(ValueError, match=r"ConvTranspose2D.*3 features.*expects 2"):
        layer.fwd(params, jnp.zeros((1, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"ConvTranspose2D.*crops more than the whole output.*\(-1, -1\)"):
        layer.fwd(params, jnp.zeros((1, 1, 1, 2)))
    with pytest.raises(TypeError, match=r"ConvTranspose2D.*floating-point.*int32"):
        layer.fwd(params, jnp.zeros((1, 6, 6, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"ConvTranspose2D.*padding must be 'SAME', 'VALID'"):
        fn.ConvTranspose2D(4, 3, padding="CAUSAL")
    with pytest.raises(ValueError, match=r"ConvTranspose2D.*stride must be a positive int"):
        fn.ConvTranspose2D(4, 3, stride=0)
