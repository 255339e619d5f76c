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

The code (:func:`conv_forward`, :func:`conv_backward`) is written for any number
of spatial axes; ``Conv1D`` runs the same two functions on NLC signals.

Per example (``fnnet.per_example``, :func:`conv_rules`): ``dw_i`` is the same
correlation on example ``i`` alone; its norm is the ghost norm of the image
patches ``P_i (Ho Wo, kh kw C)`` and ``dy_i (Ho Wo, F)``,
``||P_i^T dy_i||^2 = sum_{t,s} (P_t . P_s)(dy_t . dy_s)`` (or ``P_i^T dy_i``
formed, whichever is cheaper); ``db_i = sum dy_i``.

PyTorch: ``nn.Conv2d`` is NCHW with an OIHW kernel; ``x_nhwc = x_nchw.transpose(0, 2, 3, 1)``
and ``w_hwio = w_oihw.transpose(2, 3, 1, 0)`` give the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..sqnorm import ghost_sqnorm
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros
from ..structure import recorded

NHWC = "in NHWC layout (batch, height, width, channels)"
NHWC_EXAMPLE = "(height, width, channels) (NHWC without the batch axis)"
NHWC_HINT = ("For a single image use x[None]; for PyTorch's NCHW layout use "
             "x.transpose(0, 2, 3, 1).")


def _same_pads(size: int, k_eff: int, s: int) -> tuple[int, int]:
    total = max((-(-size // s) - 1) * s + k_eff - size, 0)
    return total // 2, total - total // 2


def dimension_numbers(nd: int):
    """``lax.conv_general_dilated`` layouts for ``nd`` spatial axes: the forward
    (channels-last input, ``(k..., in, out)`` kernel) and the kernel gradient's."""
    sp = "DHW"[-nd:]
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C"), ("C" + sp + "N", "I" + sp + "O", sp + "NC")


def conv_geometry(name: str, x, kernel_eff, strides, padding):
    """Per spatial axis of the channels-last ``x``: ``(lo, hi)`` padding and the
    stride remainder ``r``. ``padding``: "SAME", "VALID", an int, or "CAUSAL"
    (everything on the left: ``lo = ke - 1``, ``hi = 0``)."""
    sizes = x.shape[1:1 + len(kernel_eff)]
    if padding == "SAME":
        pads = [_same_pads(n, k, s) for n, k, s in zip(sizes, kernel_eff, strides)]
    elif padding == "CAUSAL":
        pads = [(k - 1, 0) for k in kernel_eff]
    else:
        p = 0 if padding == "VALID" else padding
        pads = [(p, p)] * len(sizes)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, pads))
    _checks.window_fits(name, x, kernel_eff, padded, repr(padding))
    rem = [(n - k) % s for n, k, s in zip(padded, kernel_eff, strides)]
    return pads, rem


def conv_forward(name: str, x, w, strides, padding, dil):
    """The convolution (no bias) of the channels-last ``x`` with ``w (k..., in, out)``."""
    nd = w.ndim - 2
    k_eff = tuple((k - 1) * d + 1 for k, d in zip(w.shape[:nd], dil))
    pads, _ = conv_geometry(name, x, k_eff, strides, padding)
    dt = jnp.result_type(x, w)
    return lax.conv_general_dilated(x.astype(dt), w.astype(dt), strides, pads,
                                    rhs_dilation=dil, dimension_numbers=dimension_numbers(nd)[0])


def conv_backward(name: str, x, w, dy, strides, padding, dil):
    """``({"w": dw, "b": db}, dx)`` of :func:`conv_forward` plus a bias, as convolutions
    (the formulas of the module docstring, for any number of spatial axes)."""
    nd = w.ndim - 2
    dn, dn_w = dimension_numbers(nd)
    k_eff = tuple((k - 1) * d + 1 for k, d in zip(w.shape[:nd], dil))
    pads, rem = conv_geometry(name, x, k_eff, strides, padding)
    dt = jnp.result_type(x, w, dy)
    x_, w_, dy = x.astype(dt), w.astype(dt), dy.astype(dt)
    dw = lax.conv_general_dilated(x_, dy, dil, [(lo, hi - r) for (lo, hi), r in zip(pads, rem)],
                                  rhs_dilation=strides, dimension_numbers=dn_w)
    w_flip = jnp.swapaxes(w_[(slice(None, None, -1),) * nd], -2, -1)
    dx_pads = [(k - 1 - lo, k - 1 - hi + r) for k, (lo, hi), r in zip(k_eff, pads, rem)]
    dx = lax.conv_general_dilated(dy, w_flip, (1,) * nd, dx_pads, lhs_dilation=strides,
                                  rhs_dilation=dil, dimension_numbers=dn)
    db = dy.sum(axis=tuple(range(nd + 1)))
    return {"w": dw.astype(w.dtype), "b": db.astype(w.dtype)}, dx.astype(x.dtype)


def conv_rules(name: str, strides, padding, dil):
    """The per-example rules (``fnnet.per_example``) of a convolution with a bias:
    ``(per_example(res, dy), sqnorm(res, dy))`` for residuals ``(x, w)``.

    ``dw_i`` is :func:`conv_backward` on example ``i`` alone (vmapped). Its norm
    is the ghost norm of the image patches ``P_i (positions, C k...)`` and ``dy_i``:
    ``dw_i = P_i^T dy_i`` (up to the order of the patch entries, which a norm ignores).
    """

    def per_example(res, dy):
        x, w = res
        one = lambda xi, di: conv_backward(name, xi[None], w, di[None], strides, padding, dil)[0]
        return jax.vmap(one)(x, dy)

    def sqnorm(res, dy):
        x, w = res
        nd = w.ndim - 2
        k_eff = tuple((k - 1) * d + 1 for k, d in zip(w.shape[:nd], dil))
        pads, _ = conv_geometry(name, x, k_eff, strides, padding)
        patches = lax.conv_general_dilated_patches(
            x.astype(jnp.result_type(x, w)), w.shape[:nd], strides, pads, rhs_dilation=dil,
            dimension_numbers=dimension_numbers(nd)[0])
        n = x.shape[0]
        dy3 = dy.reshape(n, -1, dy.shape[-1])
        return (ghost_sqnorm(patches.reshape(n, -1, patches.shape[-1]), dy3)
                + jnp.sum(jnp.square(dy3.sum(axis=1)), axis=-1))

    return per_example, sqnorm


def padding_mode(name: str, padding, modes=("SAME", "VALID")):
    """``padding`` upper-cased (PyTorch's ``"same"``) if one of ``modes``, or a
    non-negative int; ``ValueError`` naming the layer otherwise."""
    padding = padding.upper() if isinstance(padding, str) else padding
    if not (padding in modes
            or (isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0)):
        raise ValueError(f"{name}: padding must be " + ", ".join(repr(m) for m in modes)
                         + f" or a non-negative int, got {padding!r}")
    return padding


def kernel_init(name: str, kernel, features: int, w_init, b_init, dtype, example: str):
    """``init(key, input_shape)`` of a convolution: params ``{"w": (*kernel, in,
    features), "b": (features,)}``; ``input_shape`` is one example, ``example`` its
    layout in words (e.g. ``"(height, width, channels) (NHWC without the batch axis)"``)."""

    def init(key, input_shape):
        if len(input_shape) != len(kernel) + 1:
            raise ValueError(f"{name}: input_shape must be one example's {example}, "
                             f"got {tuple(input_shape)}")
        if len(kernel) == 2:
            _checks.nchw_looking_shape(name, tuple(input_shape))
        kw, kb = jax.random.split(key)
        return {"w": w_init(kw, (*kernel, input_shape[-1], features), dtype),
                "b": b_init(kb, (features,), dtype)}

    return init


@recorded
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
    padding = padding_mode(name, padding)
    init = kernel_init(name, kernel, features, w_init, b_init, dtype, NHWC_EXAMPLE)

    def fwd(params, x, *, key=None):
        w, b = params["w"], params["b"]
        _checks.floating(name, x)
        _checks.rank(name, x, 4, NHWC, NHWC_HINT)
        _checks.channels_last(name, x, w.shape[2], f"its kernel w of shape {w.shape} (HWIO)")
        y = conv_forward(name, x, w, strides, padding, dil)
        return y + b, (x, w)

    def bwd(res, dy):
        x, w = res
        return conv_backward(name, x, w, dy, strides, padding, dil)

    per_example, sqnorm = conv_rules(name, strides, padding, dil)
    return named(name, init, fwd, bwd, per_example=per_example, sqnorm=sqnorm)
