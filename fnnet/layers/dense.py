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

Per example (``fnnet.per_example``; ``x_i (T, in)``, ``dy_i (T, features)``, T = 1
for a plain batch)::

    dw_i = x_i^T dy_i              db_i = sum_t dy_i[t]
    ||dw_i||^2 = ||x_i||^2 ||dy_i||^2        (T = 1)
               = sum_{t,s} (x_t . x_s)(dy_t . dy_s)   (ghost norm, when 2 T^2 < in features)

Tiny kernels (``in * features <= 8``, e.g. XOR's 2-3-1) compute the same three
products as broadcast-multiply-and-sum instead of ``dot``: on XLA:CPU a ``dot``
is a separate runtime call (a "thunk") that fuses with nothing, while the
elementwise form fuses with the bias, the activation and the optimizer update,
and lets XLA compile a small training loop (``fit``'s ``lax.scan``) into one
kernel: XOR's 10,000-epoch ``fit`` runs about 4x faster (measured in
``benchmarks/NOTES.md``). Larger kernels use ``dot`` (BLAS-class GEMM). The
threshold is measured, not guessed: at 16 entries (a 2-8 layer) the elementwise
form still speeds up one model's run (16 -> 6 ms) but makes a 100-seed vmapped
sweep 12x slower (72 -> 877 ms), because under ``vmap`` the loop no longer
compiles to one kernel; at 8 entries both paths win. The
math, and therefore ``jax.grad`` of the forward, is the same either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros
from ..sqnorm import ghost_sqnorm
from ..structure import recorded


# Kernels with at most this many entries use the elementwise (fusible) products.
SMALL_KERNEL = 8


def _small(w) -> bool:
    return w.shape[0] * w.shape[1] <= SMALL_KERNEL


def _xw(x, w):
    """``x @ w`` over the last axis of ``x``."""
    if _small(w):
        return jnp.sum(x[..., :, None] * w, axis=-2)
    return x @ w


@recorded
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
        return _xw(x, w) + b, (x, w)

    def bwd(res, dy):
        x, w = res
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        db = dy2.sum(axis=0)
        if _small(w):
            dw = jnp.sum(x2[:, :, None] * dy2[:, None, :], axis=0)
            dx = jnp.sum(dy[..., None, :] * w, axis=-1).astype(x.dtype)
        else:
            # XLA folds both transposes into the dot's contracting dims: no copies.
            dw = x2.T @ dy2
            dx = (dy @ w.T).astype(x.dtype)
        return {"w": dw.astype(w.dtype), "b": db.astype(w.dtype)}, dx

    def per_example(res, dy):
        x3, dy3, w = _per_example_view(res, dy)
        return {"w": jnp.einsum("nti,nto->nio", x3, dy3).astype(w.dtype),
                "b": dy3.sum(axis=1).astype(w.dtype)}

    def sqnorm(res, dy):
        x3, dy3, _ = _per_example_view(res, dy)
        return ghost_sqnorm(x3, dy3) + jnp.sum(jnp.square(dy3.sum(axis=1)), axis=-1)

    return named(name, init, fwd, bwd, per_example=per_example, sqnorm=sqnorm)


def _per_example_view(res, dy):
    """``x (n, T, in)``, ``dy (n, T, features)``: the leading axes past the batch as T."""
    x, w = res
    n = x.shape[0]
    return x.reshape(n, -1, x.shape[-1]), dy.reshape(n, -1, dy.shape[-1]), w
