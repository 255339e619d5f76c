"""BatchNorm: normalise each channel over the batch, then scale and shift; keeps running
statistics as layer state.

Shapes: ``x (batch, ..., C)`` (features last: ``(batch, C)`` or NHWC images), params
``{"scale": (C,), "bias": (C,)}`` (ones, zeros), state ``{"mean": (C,), "var": (C,)}``
(zeros, ones), ``y`` like ``x``. Means run over EVERY axis but the last, ``n``
entries per channel (``n = batch`` for ``(batch, C)``, ``batch * H * W`` for NHWC).

Training (a key given) uses the batch statistics, the biased variance::

    mu    = mean(x)                 var = mean((x - mu)^2)      (1/n)
    r     = 1 / sqrt(var + eps)     xhat = (x - mu) r
    y     = xhat * scale + bias

Backward in training, the closed form (``g = dy * scale``; means per channel over
the same ``n`` entries; the two means remove the gradient's components along the
directions ``mu`` and ``var`` move ``xhat`` in, because every example's output
depends on every other example through the batch statistics)::

    dbias  = sum(dy)                dscale = sum(dy * xhat)
    dx     = r * (g - mean(g) - xhat * mean(g * xhat))

Running statistics (the layer state, :mod:`fnnet.state`; in the params' dtype, at
least float32, like optimizer state), updated from what the training forward
computed, with the UNBIASED variance as PyTorch does::

    mean' = (1 - momentum) mean + momentum mu
    var'  = (1 - momentum) var  + momentum var * n / (n - 1)

Inference (``key=None``) uses the running statistics: ``y = (x - mean) / sqrt(var +
eps) * scale + bias``, an affine map per channel, whose backward is
``dx = dy * scale / sqrt(var + eps)`` (no batch coupling).

Residuals: ``(xhat, r, scale)``, plus the batch ``mu`` and ``var`` (two ``(C,)``
vectors) in training, for the state update.

PyTorch: ``nn.BatchNorm1d(C)`` on ``(batch, C)`` and ``nn.BatchNorm2d(C)`` on NCHW
(= this layer on NHWC), with ``momentum`` and ``eps`` equal, in ``train()`` and
``eval()`` modes. Training needs a key (``needs_key``): BatchNorm never silently
switches to the running statistics because a key was forgotten. With data
parallelism (``mesh=``) the batch statistics are those of the GLOBAL batch.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, Static, named
from ..initializers import ones, zeros
from ..state import StateRule
from ..structure import recorded


@recorded
def BatchNorm(momentum: float = 0.1, eps: float = 1e-5, *, dtype=jnp.float32) -> Layer:
    """Batch normalisation over every axis but the last, with running statistics as state."""
    if not isinstance(momentum, (int, float)) or isinstance(momentum, bool) \
            or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BatchNorm: momentum must be a number in [0, 1], got {momentum!r}")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise ValueError(f"BatchNorm: eps must be a positive float, got {eps!r}")
    name = f"BatchNorm(momentum={momentum:g}, eps={eps:g})"

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must end in the channel axis (..., C), "
                             f"got {tuple(input_shape)}")
        c = input_shape[-1]
        return {"scale": ones(key, (c,), dtype), "bias": zeros(key, (c,), dtype)}

    def fwd(params, x, *, key=None, state=None):
        scale, bias = params["scale"], params["bias"]
        _checks.floating(name, x)
        _checks.batched(name, x, layout="(batch, ..., channels)")
        _checks.last_axis(name, x, scale.shape[0], f"its scale of shape {scale.shape}")
        axes = tuple(range(x.ndim - 1))
        if key is None:  # inference: the running statistics
            if state is None:
                raise ValueError(f"{name}: inference (key=None) uses the running statistics; "
                                 f"pass state= (fn.init_state(model, params), then the state "
                                 f"training returns), or a key to train on batch statistics")
            r = lax.rsqrt(state["var"] + eps).astype(x.dtype)
            xhat = (x - state["mean"].astype(x.dtype)) * r
            return xhat * scale + bias, (xhat, r, scale, Static(None))
        n = x.size // x.shape[-1]
        if n < 2:
            raise ValueError(f"{name}: training needs more than one value per channel to "
                             f"estimate a variance, got input shape {_checks._fmt(x.shape)}; "
                             f"use a larger batch (or key=None for inference)")
        mu = jnp.mean(x, axis=axes)
        xc = x - mu
        var = jnp.mean(xc * xc, axis=axes)
        r = lax.rsqrt(var + eps)
        xhat = xc * r
        return xhat * scale + bias, (xhat, r, scale, Static(n), mu, var)

    def bwd(res, dy):
        xhat, r, scale, n = res[:4]
        axes = tuple(range(dy.ndim - 1))
        g = dy * scale
        if n.value is None:  # inference: an affine map per channel
            dx = g * r
        else:
            dx = r * (g - jnp.mean(g, axis=axes) - xhat * jnp.mean(g * xhat, axis=axes))
        return ({"scale": jnp.sum(dy * xhat, axis=axes).astype(scale.dtype),
                 "bias": jnp.sum(dy, axis=axes).astype(scale.dtype)}, dx.astype(xhat.dtype))

    def init_state(params):
        # in the params' dtype, at least float32 (as optimizer state): a float64 model
        # keeps float64 running statistics, a bfloat16 one float32
        c, dt = params["scale"].shape, jnp.promote_types(params["scale"].dtype, jnp.float32)
        return {"mean": jnp.zeros(c, dt), "var": jnp.ones(c, dt)}

    def update_state(state, res):
        n = res[3].value
        if n is None:  # an inference forward changes nothing
            return state
        mu, var = res[4], res[5]
        m = momentum
        return {"mean": (1 - m) * state["mean"] + m * mu.astype(state["mean"].dtype),
                "var": (1 - m) * state["var"] + m * (var * (n / (n - 1))).astype(state["var"].dtype)}

    return named(name, init, fwd, bwd, needs_key=True,
                 state=StateRule(init_state, update_state))
