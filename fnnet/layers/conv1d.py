"""Conv1D: 1-d convolution (cross-correlation) on NLC signals ``(batch, length, channels)``.

Shapes: ``x (n, L, C)``, kernel ``w (k, C, F)``, ``b (F,)``, ``y (n, Lo, F)``. With
stride ``s``, dilation ``d``, effective kernel size ``ke = (k - 1) d + 1`` and
padding ``(lo, hi)``::

    y[n, i, f] = b[f] + sum_{p, c} xp[n, i s + p d, c] w[p, c, f]
    Lo = (L + lo + hi - ke) // s + 1,      xp = x zero-padded by (lo, hi)

Padding: ``"VALID"`` none; an int ``p`` is ``(p, p)``; ``"SAME"`` gives
``Lo = ceil(L / s)`` with the odd element of padding at the end (as Conv2D);
``"CAUSAL"`` is ``(ke - 1, 0)``: output ``i`` (at stride 1) sees inputs ``<= i`` only,
as in WaveNet-style sequence models.

Backward: exactly Conv2D's, with one spatial axis (the same code,
:func:`fnnet.layers.conv.conv_backward`). With ``r = (L + lo + hi - ke) mod s``::

    db = sum_{n, i} dy[n, i, :]
    dw = correlation of xp with dy as the kernel (examples contracted), window
         stride d, kernel dilation s, padding (lo, hi - r)
           -> dw[p, c, f] = sum_{n, i} xp[n, i s + p d, c] dy[n, i, f]
    dx = dy dilated by s, padded by (ke - 1 - lo, ke - 1 - hi + r), convolved with
         the kernel flipped in time and transposed (C <-> F), kernel dilation d
           -> dx[n, l, c] = sum_{i, p, f} [l + lo = i s + p d] dy[n, i, f] w[p, c, f]

Residuals: ``(x, w)``; the paddings are recomputed from ``x.shape``.

PyTorch: ``nn.Conv1d`` is NCL with an ``(F, C, k)`` kernel: ``weight = w.permute(2, 1, 0)``
and ``x_nlc = x_ncl.transpose(0, 2, 1)`` give the same numbers (``padding="CAUSAL"``
is ``F.pad(x, (ke - 1, 0))`` followed by ``padding=0``).
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros
from .conv import conv_backward, conv_forward, kernel_init, padding_mode, conv_rules
from ..structure import recorded

NLC = "in NLC layout (batch, length, channels)"
NLC_HINT = "For one signal use x[None]; for PyTorch's NCL layout use x.transpose(0, 2, 1)."


def _positive_int(name, what, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")
    return v


@recorded
def Conv1D(features: int, kernel_size: int, *, stride: int = 1, padding="SAME", dilation: int = 1,
           w_init=glorot_uniform, b_init=zeros, dtype=jnp.float32) -> Layer:
    """1-d convolution with params ``{"w": (k, in, features), "b": (features,)}``.

    Args:
      features: output channels (positive int).
      kernel_size, stride, dilation: positive ints.
      padding: ``"SAME"``, ``"VALID"``, ``"CAUSAL"`` (either case) or a non-negative int.
      w_init, b_init: initializers ``(key, shape, dtype)``; default glorot_uniform and zeros.
      dtype: parameter dtype.
    """
    settings = (("stride", stride, 1), ("padding", padding, "SAME"), ("dilation", dilation, 1))
    name = f"Conv1D({features}, {kernel_size!r}" + "".join(
        f", {k}={v!r}" for k, v, default in settings if v != default) + ")"
    _positive_int("Conv1D", "features", features)
    kernel = _positive_int(name, "kernel_size", kernel_size)
    strides = (_positive_int(name, "stride", stride),)
    dil = (_positive_int(name, "dilation", dilation),)
    padding = padding_mode(name, padding, ("SAME", "VALID", "CAUSAL"))
    init = kernel_init(name, (kernel,), features, w_init, b_init, dtype,
                       "(length, channels) (NLC without the batch axis)")

    def fwd(params, x, *, key=None):
        w, b = params["w"], params["b"]
        _checks.floating(name, x)
        _checks.rank(name, x, 3, NLC, NLC_HINT)
        _checks.last_axis(name, x, w.shape[1], f"its kernel w of shape {w.shape} (k, in, out)")
        return conv_forward(name, x, w, strides, padding, dil) + b, (x, w)

    def bwd(res, dy):
        x, w = res
        return conv_backward(name, x, w, dy, strides, padding, dil)

    per_example, sqnorm = conv_rules(name, strides, padding, dil)
    return named(name, init, fwd, bwd, per_example=per_example, sqnorm=sqnorm)
