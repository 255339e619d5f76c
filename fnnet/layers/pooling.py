"""MaxPool2D and AvgPool2D: pooling over ``(kh, kw)`` windows of NHWC images.

Shapes: ``x (n, H, W, C)`` -> ``y (n, Ho, Wo, C)`` with ``VALID`` padding (no
padding; windows that would stick out are dropped, as in PyTorch's default
``ceil_mode=False``), stride ``(sh, sw)`` (default: the window)::

    Ho = (H - kh) // sh + 1,        Wo = (W - kw) // sw + 1
    P_{p,q}[n, i, j, c] = x[n, i sh + p, j sw + q, c]      (one strided slice per
                                                            window offset p, q)
    Max:  y = max_{p,q} P_{p,q},    k* = first argmax over (p, q) in row-major order
          dx = sum_{p,q} scatter_{p,q}( dy * [k* == (p, q)] )
    Avg:  y = mean_{p,q} P_{p,q}
          dx = sum_{p,q} scatter_{p,q}( dy / (kh kw) )

``scatter_{p,q}`` is the transpose of the strided slice ``P_{p,q}`` (a ``lax.pad``
with interior padding ``s - 1``); the sum over offsets adds the contributions of
overlapping windows (stride < window).

**Ties in MaxPool2D.** When several entries of a window share the maximum, the
whole gradient goes to the FIRST of them in row-major window order (smallest
``p``, then smallest ``q``), deterministically. The forward is written as
"gather the argmax" so ``jax.grad`` of this forward routes ties the same way;
note that ``jax.grad`` of a plain ``max``/``lax.reduce_window`` max pool (e.g.
in other libraries) may route or split tied gradients differently.
**NaN.** A NaN in a window is that window's maximum (``argmax`` ranks NaN above
every number, like ``jnp.max``), so MaxPool2D's output there is NaN and its
gradient goes to the NaN entry; AvgPool2D's mean is NaN by arithmetic. Pooling
never turns a NaN input into a number.
Residuals: Max ``(argmax index (int8; int32 for windows over 127 entries), Static(x.shape))``;
Avg ``Static(x.shape)``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, Static, named, no_params
from .conv import NHWC, NHWC_HINT
from ..structure import recorded


def _pool(kind: str, window, stride, rules) -> Layer:
    """A parameter-free pooling layer. ``rules(size) -> (fwd_fn, bwd_fn)`` for a
    window of ``size`` entries: ``fwd_fn(patches) -> (y, res)`` gets the ``size``
    strided slices stacked on axis 0; ``bwd_fn(res, dy)`` returns the same stack of
    slice cotangents, which is scattered back here."""
    name = f"{kind}({window!r}" + ("" if stride is None else f", stride={stride!r}") + ")"
    kernel = _checks.positive_pair(name, "window", window)
    strides = kernel if stride is None else _checks.positive_pair(name, "stride", stride)
    offsets = [(p, q) for p in range(kernel[0]) for q in range(kernel[1])]
    fwd_fn, bwd_fn = rules(len(offsets))

    def out_size(x):
        _checks.window_fits(name, x, kernel, x.shape[1:3], "'VALID'")
        return [(n - k) // s + 1 for n, k, s in zip(x.shape[1:3], kernel, strides)]

    # jit: eagerly, each pooling step is one compiled kernel instead of ~kh*kw
    # small ones; under an outer jit (training, grad checks) it is simply inlined.
    @jax.jit
    def forward(x):
        (oh, ow), (sh, sw) = out_size(x), strides
        return fwd_fn(jnp.stack([x[:, p:p + (oh - 1) * sh + 1:sh, q:q + (ow - 1) * sw + 1:sw]
                                 for p, q in offsets]))

    @partial(jax.jit, static_argnums=0)
    def backward(shape, res, dy):
        (h, w), (sh, sw) = shape[1:3], strides
        (oh, ow), zero = dy.shape[1:3], jnp.zeros((), dy.dtype)
        d_patches = bwd_fn(res, dy)
        return sum(lax.pad(d_patches[i], zero, [(0, 0, 0), (p, h - p - (oh - 1) * sh - 1, sh - 1),
                                                (q, w - q - (ow - 1) * sw - 1, sw - 1), (0, 0, 0)])
                   for i, (p, q) in enumerate(offsets))

    def fwd(params, x, *, key=None):
        _checks.floating(name, x)
        _checks.rank(name, x, 4, NHWC, NHWC_HINT)
        out_size(x)
        y, res = forward(x)
        return y, (res, Static(x.shape))

    def bwd(res, dy):
        return (), backward(res[1].value, res[0], dy)

    return named(name, no_params, fwd, bwd)


@recorded
def MaxPool2D(window, stride=None) -> Layer:
    """Max over ``window`` (int or pair) with ``stride`` (default: the window); VALID.

    Ties: the gradient goes to the first maximum in row-major window order.
    """

    def rules(size):
        def fwd_fn(patches):
            idx = jnp.argmax(patches, axis=0)  # the first maximum on ties
            y = jnp.take_along_axis(patches, idx[None], axis=0)[0]
            return y, idx.astype(jnp.int8 if size <= 127 else jnp.int32)

        def bwd_fn(idx, dy):
            hit = idx[None] == jnp.arange(size, dtype=idx.dtype).reshape(-1, 1, 1, 1, 1)
            return jnp.where(hit, dy[None], 0).astype(dy.dtype)

        return fwd_fn, bwd_fn

    return _pool("MaxPool2D", window, stride, rules)


@recorded
def AvgPool2D(window, stride=None) -> Layer:
    """Mean over ``window`` (int or pair) with ``stride`` (default: the window); VALID
    (PyTorch's ``nn.AvgPool2d`` with padding 0)."""
    return _pool("AvgPool2D", window, stride, lambda size: (
        lambda patches: (jnp.mean(patches, axis=0), None),
        lambda res, dy: jnp.broadcast_to(dy / size, (size, *dy.shape))))
