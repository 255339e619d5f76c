"""Flatten and Reshape: change the per-example shape, keep the batch axis.

Forward and backward (a reshape is linear and its transpose is the inverse
reshape)::

    Flatten:         y = x.reshape(n, -1)          dx = dy.reshape(x.shape)
    Reshape(shape):  y = x.reshape(n, *shape)      dx = dy.reshape(x.shape)

``shape`` is ONE example's shape (no batch axis) and may hold one ``-1``.
Residual: ``Static(x.shape)`` (no arrays). Flatten of an NHWC image flattens in
(H, W, C) order; PyTorch's ``nn.Flatten`` on NCHW flattens in (C, H, W) order,
so weights of a following Dense are permuted between the two layouts.
"""

from __future__ import annotations

import math

from .. import _checks
from ..core import Layer, Static, named, no_params
from ..structure import recorded


def _reshaper(name: str, new_shape) -> Layer:
    """``new_shape(x) -> per-example output shape`` (validated here)."""

    def fwd(params, x, *, key=None):
        _checks.batched(name, x, min_ndim=1, layout="(batch, ...)")
        return x.reshape(x.shape[0], *new_shape(x)), Static(x.shape)

    def bwd(shape, dy):
        return (), dy.reshape(shape.value)

    return named(name, no_params, fwd, bwd)


Flatten = _reshaper("Flatten", lambda x: (math.prod(x.shape[1:]),))


@recorded
def Reshape(shape) -> Layer:
    """Reshape each example to ``shape`` (a tuple of ints, at most one ``-1``)."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    name = f"Reshape({shape!r})"
    if (not all(isinstance(d, int) and (d >= 1 or d == -1) for d in shape)
            or shape.count(-1) > 1):
        raise ValueError(f"{name}: shape must be a tuple of positive ints with at most one "
                         f"-1 (one example's shape, no batch axis), got {shape!r}")

    def new_shape(x):
        size, known = math.prod(x.shape[1:]), math.prod(d for d in shape if d != -1)
        out = tuple(size // known if d == -1 else d for d in shape)
        if math.prod(out) != size:
            raise ValueError(f"{name}: cannot reshape an example of shape {x.shape[1:]} "
                             f"({size} entries; input shape {x.shape}) to {shape}. The "
                             f"per-example sizes must match (the batch axis is kept).")
        return out

    return _reshaper(name, new_shape)
