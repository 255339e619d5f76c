"""RMSNorm: divide each example by the root mean square of its last axis, then scale.

Shapes: ``x (..., d)``, params ``{"scale": (d,)}`` (ones), ``y`` like ``x``. The
mean runs over the last axis (``d`` entries)::

    r    = 1 / sqrt(mean(x^2) + eps)
    xhat = x * r
    y    = xhat * scale

Backward (``g = dy * scale``; the sum for ``dscale`` runs over all leading axes)::

    dscale = sum(dy * xhat)
    dx     = r * (g - xhat * mean(g * xhat))

(LayerNorm's compact form without the mean-removal term: ``r`` depends on ``x``
only through ``mean(x^2)``, whose gradient points along ``xhat``.)
Residuals: ``(xhat, r, scale)``.

PyTorch: identical to ``nn.RMSNorm(d, eps=eps)`` (eps inside the square root,
weight = ones). No bias, no mean subtraction.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, named
from ..initializers import ones
from ..structure import recorded


@recorded
def RMSNorm(eps: float = 1e-6, *, dtype=jnp.float32) -> Layer:
    """Root-mean-square normalization over the last axis with params ``{"scale": (d,)}``."""
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise ValueError(f"RMSNorm: eps must be a positive float, got {eps!r}")
    name = f"RMSNorm(eps={eps:g})"

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must end in the normalized axis (..., d), "
                             f"got {tuple(input_shape)}")
        return {"scale": ones(key, (input_shape[-1],), dtype)}

    def fwd(params, x, *, key=None):
        scale = params["scale"]
        _checks.floating(name, x)
        _checks.batched(name, x, layout="(batch, ..., features)")
        _checks.last_axis(name, x, scale.shape[0], f"its scale of shape {scale.shape}")
        r = lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
        xhat = x * r
        return xhat * scale, (xhat, r, scale)

    def bwd(res, dy):
        xhat, r, scale = res
        g = dy * scale
        dx = r * (g - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
        dscale = jnp.sum(dy * xhat, axis=tuple(range(dy.ndim - 1)))
        return {"scale": dscale.astype(scale.dtype)}, dx.astype(xhat.dtype)

    def per_example(res, dy):  # fnnet.per_example: the sum over example i's own axes
        xhat, _, scale = res
        return {"scale": jnp.sum(dy * xhat, axis=tuple(range(1, dy.ndim - 1))).astype(scale.dtype)}

    return named(name, init, fwd, bwd, per_example=per_example)
