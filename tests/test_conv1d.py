"""Conv1D: three-way checks, a NumPy cross-correlation reference (always runs), PyTorch's
nn.Conv1d (when installed), causality, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct


def randn(shape, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def conv1d_reference(x, w, b, stride, pads, dilation):
    """y[n, i, f] = b[f] + sum_{p, c} xp[n, i s + p d, c] w[p, c, f], in NumPy loops."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = np.pad(x, [(0, 0), pads, (0, 0)])
    k = w.shape[0]
    lo = (xp.shape[1] - (k - 1) * dilation - 1) // stride + 1
    y = np.zeros((x.shape[0], lo, w.shape[2]))
    for i in range(lo):
        for p in range(k):
            y[:, i] += xp[:, i * stride + p * dilation] @ w[p]
    return y + np.asarray(b)


def pads_of(length, k, s, padding, d):
    ke = (k - 1) * d + 1
    if padding == "CAUSAL":
        return (ke - 1, 0)
    if padding == "SAME":
        total = max((-(-length // s) - 1) * s + ke - length, 0)
        return (total // 2, total - total // 2)
    return (0, 0) if padding == "VALID" else (padding, padding)


# kernel, stride, padding, dilation: CAUSAL with dilation, SAME with a stride remainder,
# VALID, and an int padding beyond the kernel's reach (negative dx pads)
CASES = [(3, 1, "CAUSAL", 2), (2, 3, "SAME", 2), (3, 2, "VALID", 1), (1, 2, 2, 1)]


def _three_way(cases):
    """Geometries side by side (parallel branches: one compile, every branch's kernel
    and input its own rows in the report)."""
    net = fn.parallel(*[fn.Conv1D(2, k, stride=s, padding=p, dilation=d) for k, s, p, d in cases])
    x = randn((2, 7, 2), 0)
    params = net.init(jax.random.key(1), ((7, 2),) * len(cases))
    assert_layer_correct(net, params, (x,) * len(cases))


def test_three_way_causal_dilated_and_strided_same():
    _three_way(CASES[:2])


@pytest.mark.slow
def test_three_way_valid_and_int_padding():
    _three_way(CASES[2:])


@pytest.mark.parametrize("k,s,p,d", CASES + [(3, 1, "SAME", 1)])
def test_forward_matches_numpy_reference(k, s, p, d):
    layer = fn.Conv1D(4, k, stride=s, padding=p, dilation=d)
    x = randn((2, 9, 3), 2)
    params = {"w": randn((k, 3, 4), 3), "b": jnp.arange(4.0)}
    ref = conv1d_reference(x, params["w"], params["b"], s, pads_of(9, k, s, p, d), d)
    np.testing.assert_allclose(fn.apply(layer, params, x), ref, rtol=1e-5, atol=1e-5)


def test_causal_output_never_sees_the_future():
    layer = fn.Conv1D(3, 3, padding="causal", dilation=2)
    params = layer.init(jax.random.key(0), (10, 2))
    x = randn((1, 10, 2), 4)
    y = fn.apply(layer, params, x)
    y2 = fn.apply(layer, params, x.at[:, 6:].set(100.0))   # change the future from t = 6 on
    assert y.shape == (1, 10, 3)
    np.testing.assert_array_equal(y[:, :6], y2[:, :6])
    assert not np.allclose(y[:, 6], y2[:, 6])


@pytest.mark.parametrize("k,s,p,d", [CASES[0], CASES[2],
                                     *(pytest.param(*c, marks=pytest.mark.slow) for c in CASES[1::2])])
def test_matches_pytorch_conv1d(k, s, p, d):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = fn.Conv1D(4, k, stride=s, padding=p, dilation=d)
    x, w, b = randn((2, 9, 3), 5), randn((k, 3, 4), 6), randn((4,), 7)
    xt = torch.tensor(np.asarray(x, np.float64).transpose(0, 2, 1))
    wt = torch.tensor(np.asarray(w, np.float64).transpose(2, 1, 0))   # w.permute(2, 1, 0)
    lo, hi = pads_of(9, k, s, p, d)
    yt = F.conv1d(F.pad(xt, (lo, hi)), wt, torch.tensor(np.asarray(b, np.float64)), stride=s,
                  dilation=d)
    y = fn.apply(layer, {"w": w, "b": b}, x)
    np.testing.assert_allclose(y, yt.numpy().transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


def test_errors_are_clear():
    layer = fn.Conv1D(4, 3, padding="VALID")
    params = {"w": jnp.zeros((3, 2, 4)), "b": jnp.zeros(4)}
    with pytest.raises(ValueError, match=r"Conv1D\(4, 3, padding='VALID'\): expected a 3-d input in NLC"):
        layer.fwd(params, jnp.zeros((6, 2)))
    with pytest.raises(ValueError, match=r"Conv1D.*3 features.*expects 2"):
        layer.fwd(params, jnp.zeros((1, 6, 3)))
    with pytest.raises(ValueError, match=r"Conv1D.*window \(3,\) is larger.*\(2,\)"):
        layer.fwd(params, jnp.zeros((1, 2, 2)))
    with pytest.raises(TypeError, match=r"Conv1D.*floating-point.*int32"):
        layer.fwd(params, jnp.zeros((1, 6, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"Conv1D\(4, 3, padding='future'\): padding must be"):
        fn.Conv1D(4, 3, padding="future")
    with pytest.raises(ValueError, match=r"Conv1D.*stride must be a positive int, got 0"):
        fn.Conv1D(4, 3, stride=0)
    with pytest.raises(ValueError, match=r"Conv1D.*input_shape.*\(length, channels\)"):
        layer.init(jax.random.key(0), (6, 6, 2))
