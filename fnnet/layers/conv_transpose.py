"""ConvTranspose2D: the transposed ("fractionally strided") 2-d convolution on NHWC images.

Shapes: ``x (n, H, W, C)``, kernel ``w (kh, kw, C, F)``, ``b (F,)``, ``y (n, Ho, Wo, F)``.
Each input pixel scatters a copy of the kernel, scaled by it, into the output at
stride ``s``; a crop ``(c_lo, c_hi)`` per spatial axis then trims the border::

    y[n, i s + p - c_lo, j s + q - c_lo', f] += x[n, i, j, c] w[p, q, c, f]     (+ b[f])
    Ho = (H - 1) s + k - c_lo - c_hi

Padding: ``"VALID"`` crops nothing (``Ho = (H - 1) s + k``); an int ``p`` crops ``p``
on each side (PyTorch's ``padding=p``); ``"SAME"`` gives ``Ho = H s`` and crops like
``jax.lax.conv_transpose(..., padding="SAME")``: ``c_lo = k - 1 - a``,
``c_hi = k - 1 - (k + s - 2 - a)`` with ``a = k - 1`` if ``s > k - 1`` else
``ceil((k + s - 2) / 2)`` (a negative crop is extra zeros that only get the bias).

As a convolution (how the forward is computed): ``x`` dilated by ``s``
(``lhs_dilation``), padded by ``(k - 1 - c_lo, k - 1 - c_hi)``, correlated with the
kernel flipped in space::

    y = conv(dilate_s(x), flip(w), stride 1, pad (k - 1 - c_lo, k - 1 - c_hi)) + b

Backward: two ordinary strided convolutions (the transposed convolution's
adjoint is the plain convolution, so ``dx`` is a Conv2D forward of ``dy``)::

    db = sum_{n, i, j} dy[n, i, j, :]
    dx[n, i, j, c] = sum_{p, q, f} dy[n, i s + p - c_lo, j s + q - c_lo', f] w[p, q, c, f]
         = conv(dy, w with C <-> F swapped, stride s, pad (c_lo, c_hi))
    dw[p, q, c, f] = sum_{n, i, j} x[n, i, j, c] dy[n, i s + p - c_lo, j s + q - c_lo', f]
         = correlation of dy (padded (c_lo, c_hi), examples contracted) with x as the
           kernel, kernel dilation s

Residuals: ``(x, w)``; the crops are recomputed from the shapes.

PyTorch: ``F.conv_transpose2d(x_nchw, w.permute(2, 3, 0, 1), stride=s, padding=p)``
(its weight is ``(in, out, kh, kw)``) equals ``"VALID"`` (``p = 0``) or an int ``p``,
with ``x_nhwc = x_nchw.transpose(0, 2, 3, 1)``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros
from .conv import NHWC, NHWC_EXAMPLE, NHWC_HINT, dimension_numbers, kernel_init, padding_mode
from ..structure import recorded

_DN, _ = dimension_numbers(2)
_DN_W = ("CHWN", "IHWO", "HWCN")   # dy as lhs (examples contracted), x as the kernel


def _crops(k: int, s: int, padding) -> tuple[int, int]:
    """``(c_lo, c_hi)``: what is cut from each end of the full ``(H - 1) s + k`` output."""
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":
        a = k - 1 if s > k - 1 else math.ceil((k + s - 2) / 2)
        return k - 1 - a, k - 1 - (k + s - 2 - a)
    return padding, padding


@recorded
def ConvTranspose2D(features: int, kernel_size, *, stride=1, padding="VALID",
                    w_init=glorot_uniform, b_init=zeros, dtype=jnp.float32) -> Layer:
    """Transposed 2-d convolution with params ``{"w": (kh, kw, in, features), "b": (features,)}``.

    Args:
      features: output channels (positive int).
      kernel_size, stride: an int or a pair ``(height, width)``, each >= 1.
      padding: ``"VALID"`` (default; output ``(H - 1) s + k``), ``"SAME"`` (output
        ``H s``) or a non-negative int ``p`` (PyTorch's ``padding=p``).
      w_init, b_init: initializers ``(key, shape, dtype)``; default glorot_uniform and zeros.
      dtype: parameter dtype.
    """
    settings = (("stride", stride, 1), ("padding", padding, "VALID"))
    name = f"ConvTranspose2D({features}, {kernel_size!r}" + "".join(
        f", {k}={v!r}" for k, v, default in settings if v != default) + ")"
    if not isinstance(features, int) or isinstance(features, bool) or features <= 0:
        raise ValueError(f"ConvTranspose2D: features must be a positive int, got {features!r}")
    kernel = _checks.positive_pair(name, "kernel_size", kernel_size)
    strides = _checks.positive_pair(name, "stride", stride)
    padding = padding_mode(name, padding)
    crops = [_crops(k, s, padding) for k, s in zip(kernel, strides)]
    init = kernel_init(name, kernel, features, w_init, b_init, dtype, NHWC_EXAMPLE)

    def fwd(params, x, *, key=None):
        w, b = params["w"], params["b"]
        _checks.floating(name, x)
        _checks.rank(name, x, 4, NHWC, NHWC_HINT)
        _checks.last_axis(name, x, w.shape[2], f"its kernel w of shape {w.shape} (HWIO)")
        out = [(n - 1) * s + k - lo - hi for n, s, k, (lo, hi) in zip(x.shape[1:3], strides,
                                                                        kernel, crops)]
        if min(out) < 1:
            raise ValueError(f"{name}: padding {padding!r} crops more than the whole output "
                             f"(input shape {_checks._fmt(x.shape)} gives spatial size "
                             f"{tuple(out)}); use less padding or a larger input.")
        dt = jnp.result_type(x, w)
        pads = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel, crops)]
        y = lax.conv_general_dilated(x.astype(dt), w.astype(dt)[::-1, ::-1], (1, 1), pads,
                                     lhs_dilation=strides, dimension_numbers=_DN)
        return y + b, (x, w)

    def bwd(res, dy):
        x, w = res
        dt = jnp.result_type(x, w, dy)
        x_, w_, dy = x.astype(dt), w.astype(dt), dy.astype(dt)
        dx = lax.conv_general_dilated(dy, jnp.swapaxes(w_, 2, 3), strides, crops,
                                      dimension_numbers=_DN)
        dw = lax.conv_general_dilated(dy, x_, (1, 1), crops, rhs_dilation=strides,
                                      dimension_numbers=_DN_W)
        db = dy.sum(axis=(0, 1, 2))
        return {"w": dw.astype(w.dtype), "b": db.astype(w.dtype)}, dx.astype(x.dtype)

    return named(name, init, fwd, bwd)
