"""Conv2D: 2-d convolution (cross-correlation, as in every DL library) on NHWC images.

Shapes: ``x (n, H, W, C)``, kernel ``w (kh, kw, C, F)`` (HWIO), ``b (F,)``,
``y (n, Ho, Wo, F)``. With stride ``s``, dilation ``d``, effective kernel size
``ke = (k - 1) d + 1`` and padding ``(lo, hi)`` per spatial axis::

    y[n, i, j, f] = b[f] + sum_{p, q, c} xp[n, i s + p d, j s + q d, c] w[p, q, c, f]
    Ho = (H + lo + hi - ke) // s + 1,   xp = x zero-padded by (lo, hi)

``"VALID"`` is no padding, an int ``p`` is ``(p, p)``, ``"SAME"`` gives
``Ho = ceil(H / s)`` with the odd pixel of padding at the end (``hi >= lo``), as in
TensorFlow, ``jax.lax`` and PyTorch's ``padding="same"``.

Backward (both as ``lax.conv_general_dilated``, written out, no autodiff). Let
``r = (H + lo + hi - ke) mod s`` be the rows of ``xp`` past the last window (the
stride remainder: they receive no gradient)::

    db = sum_{n, i, j} dy[n, i, j, :]
    dw = correlation of xp (channels as batch, examples as features) with dy as the
         kernel, window stride d, kernel dilation s, padding (lo, hi - r)
           -> dw[p, q, c, f] = sum_{n, i, j} xp[n, i s + p d, j s + q d, c] dy[n, i, j, f]
    dx = dy dilated by s (lhs_dilation = s), padded by (ke - 1 - lo, ke - 1 - hi + r),
         convolved with the kernel flipped in space and transposed (C <-> F),
         kernel dilation d
           -> dx[n, h, w, c] = sum_{i, j, p, q, f} [h + lo = i s + p d] [w + lo = j s + q d]
                                dy[n, i, j, f] w[p, q, c, f]

The ``+ r`` in dx's padding puts back the trailing rows/columns of ``x`` that no
window reached (their gradient is 0); negative paddings crop. Residuals:
``(x, w)``; the paddings are recomputed from ``x.shape``.

PyTorch: ``nn.Conv2d`` is NCHW with an OIHW kernel; ``x_nhwc = x_nchw.transpose(0, 2, 3, 1)``
and ``w_hwio = w_oihw.transpose(2, 3, 1, 0)`` give the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros

NHWC = "in NHWC layout (batch, height, width, channels)"
NHWC_HINT = ("For a single image use x[None]; for PyTorch's NCHW layout use "
             "x.transpose(0, 2, 3, 1).")
_DN = ("NHWC", "HWIO", "NHWC")


def _same_pads(size: int, k_eff: int, s: int) -> tuple[int, int]:
    total = max((-(-size // s) - 1) * s + k_eff - size, 0)
    return total // 2, total - total // 2


def Conv2D(features: int, kernel_size, *, stride=1, padding="SAME", dilation=1,
           w_init=glorot_uniform, b_init=zeros, dtype=jnp.float32) -> Layer:
    """2-d convolution with params ``{"w": (kh, kw, in, features), "b": (features,)}``.

    Args:
      features: output channels (positive int).
      kernel_size, stride, dilation: an int or a pair ``(height, width)``, each >= 1.
      padding: ``"SAME"``, ``"VALID"`` (either case) or a non-negative int (zeros on
        every side).
      w_init, b_init: initializers ``(key, shape, dtype)``; default glorot_uniform
        (fans count the receptive field) and zeros.
      dtype: parameter dtype.
    """
    settings = (("stride", stride, 1), ("padding", padding, "SAME"), ("dilation", dilation, 1))
    name = f"Conv2D({features}, {kernel_size!r}" + "".join(
        f", {k}={v!r}" for k, v, default in settings if v != default) + ")"
    if not isinstance(features, int) or features <= 0:
        raise ValueError(f"Conv2D: features must be a positive int, got {features!r}")
    kernel = _checks.positive_pair(name, "kernel_size", kernel_size)
    strides = _checks.positive_pair(name, "stride", stride)
    dil = _checks.positive_pair(name, "dilation", dilation)
    padding = padding.upper() if isinstance(padding, str) else padding  # PyTorch's "same"
    if not (padding in ("SAME", "VALID")
            or (isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0)):
        raise ValueError(f"{name}: padding must be 'SAME', 'VALID' or a non-negative int, "
                         f"got {padding!r}")
    k_eff = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil))

    def geometry(x):
        """Per spatial axis: (lo, hi) padding and the stride remainder r."""
        sizes = x.shape[1:3]
        if padding == "SAME":
            pads = [_same_pads(n, k, s) for n, k, s in zip(sizes, k_eff, strides)]
        else:
            p = 0 if padding == "VALID" else padding
            pads = [(p, p)] * 2
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, pads))
        _checks.window_fits(name, x, k_eff, padded, repr(padding))
        rem = [(n - k) % s for n, k, s in zip(padded, k_eff, strides)]
        return pads, rem

    def init(key, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{name}: input_shape must be one example's (height, width, "
                             f"channels) (NHWC without the batch axis), got {tuple(input_shape)}")
        kw, kb = jax.random.split(key)
        return {"w": w_init(kw, (*kernel, input_shape[-1], features), dtype),
                "b": b_init(kb, (features,), dtype)}

    def fwd(params, x, *, key=None):
        w, b = params["w"], params["b"]
        _checks.floating(name, x)
        _checks.rank(name, x, 4, NHWC, NHWC_HINT)
        _checks.last_axis(name, x, w.shape[2], f"its kernel w of shape {w.shape} (HWIO)")
        pads, _ = geometry(x)
        dt = jnp.result_type(x, w)
        y = lax.conv_general_dilated(x.astype(dt), w.astype(dt), strides, pads,
                                     rhs_dilation=dil, dimension_numbers=_DN)
        return y + b, (x, w)

    def bwd(res, dy):
        x, w = res
        pads, rem = geometry(x)
        dt = jnp.result_type(x, w, dy)
        x_, w_, dy = x.astype(dt), w.astype(dt), dy.astype(dt)
        dw = lax.conv_general_dilated(x_, dy, dil, [(lo, hi - r) for (lo, hi), r in zip(pads, rem)],
                                      rhs_dilation=strides,
                                      dimension_numbers=("CHWN", "IHWO", "HWNC"))
        w_flip = jnp.swapaxes(w_[::-1, ::-1], 2, 3)
        dx_pads = [(k - 1 - lo, k - 1 - hi + r) for k, (lo, hi), r in zip(k_eff, pads, rem)]
        dx = lax.conv_general_dilated(dy, w_flip, (1, 1), dx_pads, lhs_dilation=strides,
                                      rhs_dilation=dil, dimension_numbers=_DN)
        db = dy.sum(axis=(0, 1, 2))
        return {"w": dw.astype(w.dtype), "b": db.astype(w.dtype)}, dx.astype(x.dtype)

    return named(name, init, fwd, bwd)
