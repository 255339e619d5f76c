"""LayerNorm: normalize each example over its last axis, then scale and shift.

Shapes: ``x (..., d)``, params ``{"scale": (d,), "bias": (d,)}`` (ones, zeros),
``y`` like ``x``. Means run over the last axis (``d`` entries)::

    mu    = mean(x)                 var = mean((x - mu)^2)      (biased, 1/d)
    sigma = sqrt(var + eps)         xhat = (x - mu) / sigma
    y     = xhat * scale + bias

Backward (``g = dy * scale``; sums over all leading axes for the params)::

    dbias  = sum(dy)                dscale = sum(dy * xhat)
    dx     = (1 / sigma) * (g - mean(g) - xhat * mean(g * xhat))

(The compact form: the two means are the projections that remove the
gradient's components along the directions ``mu`` and ``sigma`` depend on.)
Residuals: ``(xhat, 1 / sigma, scale)``. Per example (``fnnet.per_example``):
the same two sums over example ``i``'s own leading axes.

PyTorch: identical to ``nn.LayerNorm(d, eps=1e-5)`` (biased variance, eps inside
the square root, elementwise affine with weight=ones and bias=zeros).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, named
from ..initializers import ones, zeros


def LayerNorm(eps: float = 1e-5, *, dtype=jnp.float32) -> Layer:
    """Layer normalization over the last axis with params ``{"scale": (d,), "bias": (d,)}``."""
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise ValueError(f"LayerNorm: eps must be a positive float, got {eps!r}")
    name = f"LayerNorm(eps={eps:g})"

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must end in the normalized axis (..., d), "
                             f"got {tuple(input_shape)}")
        d = input_shape[-1]
        return {"scale": ones(key, (d,), dtype), "bias": zeros(key, (d,), dtype)}

    def fwd(params, x, *, key=None):
        scale, bias = params["scale"], params["bias"]
        _checks.floating(name, x)
        _checks.batched(name, x, layout="(batch, ..., features)")
        _checks.last_axis(name, x, scale.shape[0], f"its scale of shape {scale.shape}")
        xc = x - jnp.mean(x, axis=-1, keepdims=True)
        rstd = lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + eps)
        xhat = xc * rstd
        return xhat * scale + bias, (xhat, rstd, scale)

    def bwd(res, dy):
        xhat, rstd, scale = res
        axes = tuple(range(dy.ndim - 1))
        g = dy * scale
        dx = rstd * (g - jnp.mean(g, axis=-1, keepdims=True)
                     - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
        return ({"scale": jnp.sum(dy * xhat, axis=axes).astype(scale.dtype),
                 "bias": jnp.sum(dy, axis=axes).astype(scale.dtype)}, dx.astype(xhat.dtype))

    def per_example(res, dy):  # (n, d) per leaf: as cheap as any norm rule
        xhat, _, scale = res
        axes = tuple(range(1, dy.ndim - 1))
        return {"scale": jnp.sum(dy * xhat, axis=axes).astype(scale.dtype),
                "bias": jnp.sum(dy, axis=axes).astype(scale.dtype)}

    fwd.fnnet_per_example = per_example
    return named(name, init, fwd, bwd)
