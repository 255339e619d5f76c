"""Dropout: zero each unit with probability ``rate`` in training ("inverted" dropout).

Forward and backward, with a Bernoulli keep-mask ``m`` (``P(m = 1) = 1 - rate``)
drawn from the key, and ``s = 1 / (1 - rate)``::

    training (key given):   y = x (s m)                 dx = dy (s m)
    inference (key=None):   y = x                       dx = dy

Written as a product (not ``where(m, s x, 0)``) so that a NaN in the input stays
NaN even in a dropped unit, as in PyTorch: a NaN is never silently erased.

The surviving units are scaled by ``s`` in training so that ``E[y] = x`` and
inference needs no rescaling (PyTorch's ``nn.Dropout``, ``jax.example_libraries.stax``).
``rate`` is the probability of DROPPING a unit (PyTorch's ``p``; Keras' ``rate``).

The mask depends on the key and the shape alone: it is drawn from float32
uniforms whatever ``x``'s dtype and whether x64 is enabled, so a float32 model
trains the same with ``jax_enable_x64`` on and off, and a float64 copy of a
model (the checkers' finite differences) sees the same masks.

Residual: the boolean mask ``m`` (1 byte per unit; ``None`` in inference). The
mask is drawn in the forward and kept, so the hand-written backward and
``jax.grad`` of the same forward (same key) see exactly the same mask. The layer
is marked ``needs_key``: ``value_and_grad``, ``train_step`` and ``fit`` refuse to
train it without a key (use ``fn.apply(model, params, x)`` for inference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named, no_params
from ..structure import recorded


@recorded
def Dropout(rate: float) -> Layer:
    """Inverted dropout with drop probability ``rate`` in ``[0, 1)``; params ``()``."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"Dropout: rate is the probability of dropping a unit and must be in "
                         f"[0, 1), got {rate!r} (rate=1 would drop everything).")
    rate = float(rate)
    name, scale = f"Dropout({rate:g})", 1.0 / (1.0 - rate)

    def fwd(params, x, *, key=None):
        _checks.floating(name, x)
        if key is None:
            return x, None
        # p as a float32 array: the uniforms are float32 whatever x's dtype and whether
        # x64 is on (a Python float would draw float64 uniforms under x64: other masks)
        mask = jax.random.bernoulli(key, jnp.float32(1.0 - rate), jnp.shape(x))
        return x * (mask * scale).astype(x.dtype), mask

    def bwd(mask, dy):
        if mask is None:
            return (), dy
        return (), dy * (mask * scale).astype(dy.dtype)

    return named(name, no_params, fwd, bwd, needs_key=True)
