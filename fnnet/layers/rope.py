"""Rotary position embedding (RoPE) in Llama's ``rotate_half`` convention.

Shapes: ``x (batch, heads, T, dh)`` with ``dh`` even; ``positions`` integer ``(T,)``
(shared by the batch) or ``(batch, T)`` (one row per example, e.g. left-padded
prompts); ``cos, sin`` ``(T, dh)`` or ``(batch, T, dh)``; ``y`` like ``x``. No params.

Angles (``i = 0 .. dh/2 - 1``; the second half of each head repeats the first)::

    inv_freq_i   = 1 / theta ** (2 i / dh)                   theta: rope_theta (10000)
    a[t, i]      = a[t, i + dh/2] = positions[t] * inv_freq_i
    cos, sin     = cos(a), sin(a)                            (T, dh)

Forward (``x1, x2`` the first and second halves of each head's ``dh`` features)::

    rotate_half(x) = [-x2 | x1]
    y = x * cos + rotate_half(x) * sin
      = [x1 cos - x2 sin | x2 cos + x1 sin]                  pair (x1_i, x2_i) rotated by a_i

Backward (the transpose of a rotation is the rotation by ``-a``; ``sin`` is the same
on both halves, so ``rotate_half(dy * sin) = rotate_half(dy) * sin``)::

    dx = dy * cos - rotate_half(dy) * sin  =  apply_rope(dy, cos, -sin)

Residuals: ``(cos, sin)``; nothing of ``x``. The angles are computed in float32
(float64 when ``dtype`` is float64), then cast to ``dtype``.

Hugging Face: equals ``LlamaRotaryEmbedding`` + ``apply_rotary_pos_emb`` (default
``rope_type``, attention scaling 1), which compute the angles in float32 even in a
float64 model; the float64 agreement tests widen them to float64.

The pure functions are what :class:`GroupedQueryAttention` and the key/value-cache
decode path call: :func:`rope_angles`, :func:`apply_rope`, :func:`apply_rope_bwd`.
:func:`RotaryEmbedding` is the same map as a standalone layer (positions
``0 .. T-1``).
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named, no_params
from ..structure import recorded


def _angle_dtype(dtype):
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def rope_angles(positions, head_dim: int, theta: float = 10000.0, dtype=jnp.float32):
    """``(cos, sin)`` for integer ``positions`` ``(T,)`` or ``(batch, T)``: each
    ``positions.shape + (head_dim,)`` in ``dtype`` (see the module docstring)."""
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 2 \
            or head_dim % 2:
        raise ValueError(f"rope_angles: head_dim must be a positive even int (features are "
                         f"rotated in pairs), got {head_dim!r}")
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        raise ValueError(f"rope_angles: theta (rope_theta) must be a positive number, "
                         f"got {theta!r}")
    positions = jnp.asarray(positions)
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise TypeError(f"rope_angles: positions must be integers, got dtype {positions.dtype}")
    wide = _angle_dtype(dtype)
    # the form Hugging Face computes: 1 / (theta ** (arange(0, dh, 2) / dh))
    inv_freq = 1.0 / (float(theta) ** (jnp.arange(0, head_dim, 2, dtype=wide) / head_dim))
    a = positions.astype(wide)[..., None] * inv_freq
    a = jnp.concatenate([a, a], axis=-1)
    return jnp.cos(a).astype(dtype), jnp.sin(a).astype(dtype)


def rotate_half(x):
    """``[-x2 | x1]`` over the last axis (``x1, x2`` its halves)."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def _heads_axis(c):
    """``(T, dh)`` stays (broadcasts over batch and heads); ``(batch, T, dh)`` gets a
    heads axis: ``(batch, 1, T, dh)``."""
    return c[:, None] if c.ndim == 3 else c


def apply_rope(x, cos, sin):
    """``x * cos + rotate_half(x) * sin`` on ``x (batch, heads, T, dh)``."""
    cos, sin = _heads_axis(cos), _heads_axis(sin)
    return x * cos + rotate_half(x) * sin


def apply_rope_bwd(dy, cos, sin):
    """The VJP of :func:`apply_rope` w.r.t. ``x``: the rotation by ``-angle``."""
    cos, sin = _heads_axis(cos), _heads_axis(sin)
    return dy * cos - rotate_half(dy) * sin


@recorded
def RotaryEmbedding(theta: float = 10000.0) -> Layer:
    """RoPE as a parameter-free layer on ``(batch, heads, T, dh)`` (positions ``0..T-1``)."""
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        raise ValueError(f"RotaryEmbedding: theta must be a positive number, got {theta!r}")
    name = f"RotaryEmbedding(theta={theta:g})"

    def fwd(params, x, *, key=None):
        _checks.floating(name, x)
        _checks.rank(name, x, 4, "(batch, heads, time, head_dim)",
                     "Split the heads first: x.reshape(b, T, heads, dh).transpose(0, 2, 1, 3).")
        if x.shape[-1] % 2:
            raise ValueError(f"{name}: head_dim (last axis) must be even to rotate pairs of "
                             f"features, got shape {x.shape}")
        cos, sin = rope_angles(jnp.arange(x.shape[2]), x.shape[-1], theta, x.dtype)
        return apply_rope(x, cos, sin), (cos, sin)

    def bwd(res, dy):
        cos, sin = res
        return (), apply_rope_bwd(dy, cos, sin).astype(dy.dtype)

    return named(name, no_params, fwd, bwd)
