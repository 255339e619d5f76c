"""Dense: the affine layer ``y = x @ w + b``.

Shapes: ``x (batch, in)`` (or ``(..., in)``), ``w (in, features)``,
``b (features,)``, ``y (..., features)``.

Forward and backward (``dy`` is the cotangent of ``y``, sums run over every
leading axis)::

    y  = x @ w + b
    dw = x^T @ dy          # (in, features)
    db = sum(dy, axis=0)   # (features,)
    dx = dy @ w^T          # (batch, in)

Residuals: ``(x, w)`` -- the input and the kernel, nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros


def Dense(features: int, *, w_init=glorot_uniform, b_init=zeros, dtype=jnp.float32) -> Layer:
    """A fully connected layer with params ``{"w": (in, features), "b": (features,)}``.

    Args:
      features: number of output units (positive int).
      w_init: kernel initializer ``(key, shape, dtype) -> array``; default
        :func:`fnnet.initializers.glorot_uniform` (Keras' default; PyTorch's
        ``nn.Linear`` uses a different uniform).
      b_init: bias initializer; default zeros.
      dtype: parameter dtype (default float32).
    """
    if not isinstance(features, int) or features <= 0:
        raise ValueError(f"Dense: features must be a positive int, got {features!r}")
    name = f"Dense({features})"

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must be (in_features,), got {tuple(input_shape)}")
        kw, kb = jax.random.split(key)
        return {"w": w_init(kw, (input_shape[-1], features), dtype),
                "b": b_init(kb, (features,), dtype)}

    def fwd(params, x, *, key=None):
        w, b = params["w"], params["b"]
        _checks.floating(name, x)
        _checks.batched(name, x, layout="(batch, in_features)")
        _checks.last_axis(name, x, w.shape[0], f"its kernel w of shape {w.shape}")
        return x @ w + b, (x, w)

    def bwd(res, dy):
        x, w = res
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        dw = x2.T @ dy2
        db = dy2.sum(axis=0)
        dx = (dy @ w.T).astype(x.dtype)
        return {"w": dw.astype(w.dtype), "b": db.astype(w.dtype)}, dx

    return named(name, init, fwd, bwd)
