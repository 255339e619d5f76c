"""The memory-lean attention core: FlashAttention's forward and backward in plain JAX.

The full core (:mod:`fnnet.layers.attention`) keeps the probabilities ``p`` of
every head for the backward: ``batch * heads * T * T`` numbers, which at
``T = 2048`` dwarf everything else a transformer stores. This core keeps only
what is ``O(T)`` per head and recomputes ``p`` block by block when the backward
needs it.

Shapes: ``q, k, v, o`` are ``(batch, heads, T, dh)`` with ``q`` already scaled by
``1 / sqrt(dh)``; ``lse`` is ``(batch, heads, T)``: time is axis 2 of every array. Blocks have ``block`` rows;
``T`` is padded up to a multiple of ``block`` (padded keys are masked out,
padded queries sliced off; their cotangent is 0, so they add nothing).

Forward, one QUERY block ``i`` at a time (a ``lax.scan``; every row of the block
sees every key, so its softmax is exact, no online rescaling)::

    s_i   = q_i k^T                  (batch, heads, block, T)   masked with -inf
    m_i   = max_k s_i,   l_i = sum_k exp(s_i - m_i)
    o_i   = exp(s_i - m_i) v / l_i
    lse_i = m_i + log l_i            the row's log-sum-exp: p_i = exp(s_i - lse_i)

Residuals: ``(q, k, v, o, lse)`` -- no ``T x T`` array survives the forward.

A padding mask (``key_mask``, ``(batch, T)`` booleans, False = a padding key) joins the
causal mask in both passes. A query row that sees no key at all (a padding query
under left padding) gets ``o = 0`` and ``lse = +inf``, so ``p = exp(s - lse) = 0``
in the backward: zero gradient, never NaN.

Backward, one KEY block ``j`` at a time (a ``lax.scan`` carrying ``dq``)::

    D      = rowsum(do * o)          = rowsum(dp * p), computed once, O(T)
    p_j    = exp(q k_j^T - lse)      recomputed, (batch, heads, T, block)
    dv_j   = p_j^T do
    dp_j   = do v_j^T
    ds_j   = p_j * (dp_j - D)        the softmax Jacobian, row by row
    dk_j   = ds_j^T q
    dq    += ds_j k_j

Peak temporary memory is ``O(batch * heads * T * block)`` instead of
``O(batch * heads * T^2)``. The price is recomputing ``q k^T`` (one more of the
five ``T x T`` matmuls) and the scan's per-step overhead; under a causal mask
the masked blocks are still computed (a ``scan`` step has one shape), so the
FLOPs are those of the unmasked full core.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_BHQK = "bhqd,bhkd->bhqk"      # scores of queries q against keys k, per head


def _pad(a, tp):
    """Pad axis 2 (time) of ``a`` with zeros up to length ``tp``."""
    t = a.shape[2]
    if t == tp:
        return a
    return jnp.pad(a, [(0, 0), (0, 0), (0, tp - t)] + [(0, 0)] * (a.ndim - 3))


def _blocks(a, block):
    """``(batch, heads, n * block, ...) -> (n, batch, heads, block, ...)``: scan over axis 0."""
    b, h, tp = a.shape[:3]
    return jnp.moveaxis(a.reshape(b, h, tp // block, block, *a.shape[3:]), 2, 0)


def _unblocks(a):
    """Inverse of :func:`_blocks`."""
    n, b, h, block = a.shape[:4]
    return jnp.moveaxis(a, 0, 2).reshape(b, h, n * block, *a.shape[4:])


def _mask(rows, cols, t, causal, key_mask=None):
    """``(len(rows), len(cols))`` booleans: key ``cols`` is real (``< t``) and, if causal,
    not in the future of query ``rows``; with ``key_mask`` (``(batch, len(cols))``, the
    padding mask's block) ``(batch, 1, len(rows), len(cols))``."""
    keep = (cols < t)[None, :]
    if causal:
        keep = keep & (cols[None, :] <= rows[:, None])
    if key_mask is not None:
        keep = keep & key_mask[:, None, None, :]
    return keep


def lean_forward(q, k, v, *, causal: bool, block: int, key_mask=None):
    """``(o, lse)``: attention output ``(batch, heads, T, dh)`` and row log-sum-exp
    ``(batch, heads, T)``, one query block at a time.

    ``key_mask`` (optional): ``(batch, T)`` booleans, False for padding keys (hidden
    from every query, on top of ``causal``). A row that sees no key gets ``o = 0`` and
    ``lse = +inf`` (so its recomputed ``p = exp(s - lse)`` is 0), not NaN."""
    t = q.shape[2]
    block = min(block, t)
    tp = -(-t // block) * block
    q, k, v = (_pad(a, tp) for a in (q, k, v))
    km = None if key_mask is None else jnp.pad(key_mask, [(0, 0), (0, tp - t)])
    cols = jnp.arange(tp)

    def step(_, inp):
        i, qi = inp
        rows = i * block + jnp.arange(block)
        s = jnp.einsum(_BHQK, qi, k)                                # (b, h, block, tp)
        s = jnp.where(_mask(rows, cols, t, causal, km), s, -jnp.inf)
        m = lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
        if km is None:
            e = jnp.exp(s - m)
            l = jnp.sum(e, axis=-1, keepdims=True)
            return None, (jnp.einsum("bhqk,bhkd->bhqd", e / l, v), (m + jnp.log(l))[..., 0])
        m = jnp.where(m == -jnp.inf, 0, m)                          # empty rows: e = 0
        e = jnp.exp(s - m)
        l = jnp.sum(e, axis=-1, keepdims=True)
        safe = jnp.where(l > 0, l, 1)
        oi = jnp.einsum("bhqk,bhkd->bhqd", e / safe, v)
        return None, (oi, jnp.where(l > 0, m + jnp.log(safe), jnp.inf)[..., 0])

    _, (o, lse) = lax.scan(step, None, (jnp.arange(tp // block), _blocks(q, block)))
    return _unblocks(o)[:, :, :t], _unblocks(lse)[:, :, :t]


def lean_backward(q, k, v, o, lse, do, *, causal: bool, block: int, key_mask=None):
    """``(dq, dk, dv)`` from the residuals of :func:`lean_forward`, one key block at a time
    (``dq`` w.r.t. the scaled ``q``; ``key_mask`` as given to the forward)."""
    t = q.shape[2]
    block = min(block, t)
    tp = -(-t // block) * block
    d = jnp.einsum("bhqd,bhqd->bhq", do, o)                         # rowsum(do * o)
    q, k, v, do, lse, d = (_pad(a, tp) for a in (q, k, v, do, lse, d))
    rows = jnp.arange(tp)
    if key_mask is None:
        km_blocks = jnp.zeros((tp // block, 0), bool)               # nothing to scan over
    else:
        km = jnp.pad(key_mask, [(0, 0), (0, tp - t)])
        km_blocks = jnp.moveaxis(km.reshape(km.shape[0], tp // block, block), 1, 0)

    def step(dq, inp):
        j, kj, vj, kmj = inp
        cols = j * block + jnp.arange(block)
        s = jnp.einsum(_BHQK, q, kj)                                # (b, h, tp, block)
        keep = _mask(rows, cols, t, causal, None if key_mask is None else kmj)
        p = jnp.exp(jnp.where(keep, s - lse[..., None], -jnp.inf))
        dvj = jnp.einsum("bhqk,bhqd->bhkd", p, do)
        ds = p * (jnp.einsum(_BHQK, do, vj) - d[..., None])
        dkj = jnp.einsum("bhqk,bhqd->bhkd", ds, q)
        return dq + jnp.einsum("bhqk,bhkd->bhqd", ds, kj), (dkj, dvj)

    dq, (dk, dv) = lax.scan(step, jnp.zeros_like(q),
                            (jnp.arange(tp // block), _blocks(k, block), _blocks(v, block),
                             km_blocks))
    return dq[:, :, :t], _unblocks(dk)[:, :, :t], _unblocks(dv)[:, :, :t]
