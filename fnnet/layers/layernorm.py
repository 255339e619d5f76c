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

Range: the variance is computed from ``c (x - mu)`` with ``c = 2^-32`` and ``rstd =
c / sqrt(mean((c xc)^2) + eps c^2)``. Scaling by a power of two is exact, so the
result is bit for bit the textbook formula's, but ``(x - mu)^2`` no longer
overflows: float32/bfloat16 rows are finite up to ``|x - mu| ~ 7.9e28`` (the
plain square overflows at 1.8e19: a row of +-1e20 would return the bias), and
the squares only leave the normal range for ``|x - mu| < 5e-10``, where ``eps``
dominates. float16 is not scaled (its range, 6.5e4, leaves no room for it): its
squares overflow above ``|x - mu| = 256``; normalise such inputs in float32.

PyTorch: identical to ``nn.LayerNorm(d, eps=1e-5)`` (biased variance, eps inside
the square root, elementwise affine with weight=ones and bias=zeros).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, named
from ..initializers import ones, zeros
from ..structure import recorded


def _var_scale(dtype) -> float:
    """``2^-32`` for float32/bfloat16/float64, ``1`` for float16 (whose range is too small)."""
    return 1.0 if jnp.dtype(dtype) == jnp.float16 else 2.0 ** -32


@recorded
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
        c = _var_scale(xc.dtype)      # the variance of c xc (exact: c is a power of 2)
        u = xc * c
        rstd = lax.rsqrt(jnp.mean(u * u, axis=-1, keepdims=True) + eps * c * c) * c
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

    return named(name, init, fwd, bwd, per_example=per_example)
