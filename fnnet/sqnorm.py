"""Per-example squared gradient norms: the helpers of the layers' per-example rules.

Floor 0 (imports nothing from fnnet), so that the layer files (Dense, Conv2D,
Unembed, MultiHeadAttention) and :mod:`fnnet.per_example` share them without a
layer importing the tool that walks it. See :mod:`fnnet.per_example` for the math.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ghost_sqnorm", "examplewise_sqnorm", "wide"]


def ghost_sqnorm(a, b):
    """``||a_i^T b_i||_F^2`` for ``a (n, T, p)``, ``b (n, T, q)``: ``(n,)``.

    Ghost norm ``sum_{t,s} (a_t . a_s)(b_t . b_s)`` when ``2 T^2 < p q``,
    else the materialised ``(n, p, q)`` product (Li et al. 2022 pick the same
    way). ``T = 1`` is ``||a_i||^2 ||b_i||^2``.
    """
    a, b = wide(a), wide(b)
    n, t, p = a.shape
    q = b.shape[-1]
    if t == 1:
        return jnp.sum(a * a, axis=(1, 2)) * jnp.sum(b * b, axis=(1, 2))
    if 2 * t * t < p * q:
        aa = jnp.einsum("ntp,nsp->nts", a, a)
        bb = jnp.einsum("ntq,nsq->nts", b, b)
        return jnp.sum(aa * bb, axis=(1, 2))
    g = jnp.einsum("ntp,ntq->npq", a, b)
    return jnp.sum(g * g, axis=(1, 2))


def wide(a):
    """``a`` in at least float32 (16-bit squares would lose the sum)."""
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def examplewise_sqnorm(tree):
    """``sum over leaves of ||leaf[i]||^2``: ``(n,)`` from per-example gradients."""
    leaves = [a for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)]
    if not leaves:
        return None
    return sum(jnp.sum(jnp.square(wide(a)).reshape(a.shape[0], -1), axis=1) for a in leaves)
