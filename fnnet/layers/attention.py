"""MultiHeadAttention: scaled dot-product self-attention over ``heads`` heads.

Shapes: ``x (batch, T, d)``; params ``{"w_qkv": (d, 3d), "b_qkv": (3d,), "w_o": (d, d),
"b_o": (d,)}``; ``y (batch, T, d)``. ``dh = d / heads``; head ``i`` is the ``i``-th
contiguous ``dh``-slice of each of q, k, v.

Forward (per head, ``c = 1 / sqrt(dh)``; ``M`` the mask: ``-inf`` above the
diagonal when ``causal``, else 0)::

    [q | k | v] = x @ w_qkv + b_qkv              three (batch, T, d) thirds
    split heads:  (batch, T, d) -> (batch, heads, T, dh)      a reshape and a transpose
    s = c q k^T + M                              (batch, heads, T, T)
    p = softmax(s)  (over keys, last axis)
    o = p v                                      (batch, heads, T, dh)
    merge heads:  (batch, heads, T, dh) -> (batch, T, d)      the inverse
    y = o @ w_o + b_o

Backward (``dy`` the cotangent of ``y``; sums over batch and time for params)::

    dw_o = o^T dy,   db_o = sum(dy),   do = dy @ w_o^T        (then split heads)
    dv   = p^T do
    dp   = do v^T
    ds   = p * (dp - D),   D = rowsum(dp * p) = rowsum(do * o)   softmax Jacobian
    dq   = c ds k,         dk = c ds^T q                      (masked entries: p = 0, ds = 0)
    dqkv = [dq | dk | dv]                                      (merge heads: a reshape)
    dw_qkv = x^T dqkv,   db_qkv = sum(dqkv),   dx = dqkv @ w_qkv^T

The softmax Jacobian ``diag(p) - p p^T`` applied to ``dp`` is ``p * (dp - <dp, p>)``
row by row; ``<dp, p> = <do, p v> = <do, o>`` needs no ``T x T`` product. Head split
and merge are a reshape and a transpose, each the other's VJP. (The heads-major
layout makes every ``T x T`` product a plain batched matmul: with time-major
``(batch, T, heads, dh)`` operands XLA:CPU ran the core about 1.7x slower.) The mask adds a
constant, so it only zeroes ``p`` (and with it ``ds``) where it is ``-inf``; every row
keeps its diagonal, so no softmax is over an empty set.

Padding mask: called on the pair ``(x, mask)``, ``mask`` ``(batch, T)`` booleans (or
0/1 integers) True for a real token, the layer also hides every padding key from every
query (combined with ``causal``); ``dx`` is then ``(dx, None)``. A query row that sees
no key (a padding position under left padding) outputs ``o = 0`` with zero gradient
(the core's guard: no NaN). Same for :class:`~fnnet.GroupedQueryAttention`.

Two cores, same numbers (``memory=``):

* ``"full"`` (default) saves ``p``: residuals ``(x, w_qkv, q, k, v, o, p, w_o)``;
  ``batch * heads * T^2`` numbers for ``p``. Fastest at short sequences.
* ``"lean"``: FlashAttention's scheme in plain JAX (:mod:`.flash_attention`): saves
  each row's log-sum-exp instead of ``p`` and recomputes ``p`` in ``block_size``
  key blocks in the backward; residuals ``(x, w_qkv, q, k, v, o, lse, w_o)``,
  temporary memory ``O(T * block_size)`` per head instead of ``O(T^2)``.

PyTorch: ``nn.MultiheadAttention(d, heads, batch_first=True)`` called as
``mha(x, x, x, need_weights=False)`` (with ``attn_mask`` the upper triangle when
causal), with ``in_proj_weight = w_qkv.T``, ``in_proj_bias = b_qkv``,
``out_proj.weight = w_o.T``, ``out_proj.bias = b_o``. Default init as PyTorch's
``in_proj_weight`` (Xavier uniform; for ``w_o`` too) and zero biases.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, Static, named
from ..initializers import glorot_uniform, zeros
from ..sqnorm import ghost_sqnorm
from .flash_attention import lean_backward, lean_forward
from ..structure import recorded

MEMORY = ("full", "lean")


# --- the core: (q, k, v) -> o, per head, q already scaled ------------------------------

def full_forward(q, k, v, *, causal: bool, mask=None):
    """``(o, p)``: ``o = softmax(q k^T + M) v`` with the probabilities ``p`` kept.
    ``q, k, v``: ``(batch, heads, T, dh)``, ``q`` already scaled.

    ``mask`` (optional): booleans broadcastable to ``(batch, heads, T_q, T_k)``, True
    where a query may see a key (a padding mask; combined with ``causal``). A row that
    sees no key at all gets ``p = 0`` and ``o = 0`` (and a zero gradient), not NaN."""
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k)
    if causal:
        if q.shape[2] != k.shape[2]:
            raise ValueError(f"MultiHeadAttention: a causal mask needs a square score matrix "
                             f"(as many queries as keys), got {q.shape[2]} queries and "
                             f"{k.shape[2]} keys")
        t = q.shape[2]
        s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
    if mask is None:
        e = jnp.exp(s - lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
        p = e / jnp.sum(e, axis=-1, keepdims=True)
    else:  # rows may be empty: max -inf -> 0 and sum 0 -> 1, so e = 0 and p = 0 there
        s = jnp.where(mask, s, -jnp.inf)
        m = jnp.max(s, axis=-1, keepdims=True)
        e = jnp.exp(s - lax.stop_gradient(jnp.where(m == -jnp.inf, 0, m)))
        l = jnp.sum(e, axis=-1, keepdims=True)
        p = e / jnp.where(l > 0, l, 1)
    return jnp.einsum("bhqk,bhkd->bhqd", p, v), p


def full_backward(q, k, v, o, p, do):
    """``(dq, dk, dv)`` from the kept probabilities (``dq`` w.r.t. the scaled ``q``)."""
    dv = jnp.einsum("bhqk,bhqd->bhkd", p, do)
    d = jnp.einsum("bhqd,bhqd->bhq", do, o)[..., None]             # rowsum(dp * p)
    ds = p * (jnp.einsum("bhqd,bhkd->bhqk", do, v) - d)
    return jnp.einsum("bhqk,bhkd->bhqd", ds, k), jnp.einsum("bhqk,bhqd->bhkd", ds, q), dv


def core_forward(q, k, v, *, memory: str, causal: bool, block: int, key_mask=None):
    """``(o, kept)`` of the ``memory`` core (``kept``: ``p`` or the row log-sum-exp);
    ``key_mask`` ``(batch, T)`` booleans or None. ``q`` already scaled."""
    if memory == "full":
        m = None if key_mask is None else key_mask[:, None, None, :]
        return full_forward(q, k, v, causal=causal, mask=m)
    return lean_forward(q, k, v, causal=causal, block=block, key_mask=key_mask)


def core_backward(q, k, v, o, kept, do, *, memory: str, causal: bool, block: int,
                  key_mask=None):
    """``(dq, dk, dv)`` from :func:`core_forward`'s outputs (``dq`` w.r.t. the scaled ``q``)."""
    if memory == "full":
        return full_backward(q, k, v, o, kept, do)
    return lean_backward(q, k, v, o, kept, do, causal=causal, block=block, key_mask=key_mask)


# --- the layer ------------------------------------------------------------------------

def split_padded(name: str, x):
    """``(x, mask)`` from the input ``x`` or ``(x, mask)``; ``mask`` is None for a plain
    ``x``, else ``(batch, T)`` booleans (0/1 integers are converted; floats refused)."""
    if not isinstance(x, (tuple, list)):
        return x, None
    if len(x) != 2:
        raise ValueError(f"{name}: a tuple input must be (x, mask) with mask (batch, T) "
                         f"booleans (True = a real token), got a tuple of {len(x)}")
    x, mask = x
    mask = jnp.asarray(mask)
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
        raise TypeError(f"{name}: the padding mask must be booleans (or 0/1 integers), True "
                        f"for a real token; got dtype {mask.dtype}")
    if mask.shape != tuple(jnp.shape(x)[:2]):
        raise ValueError(f"{name}: the padding mask has shape {mask.shape}, expected (batch, T) "
                         f"= {tuple(jnp.shape(x)[:2])} for x of shape {tuple(jnp.shape(x))}")
    return x, mask if mask.dtype == jnp.bool_ else mask != 0



def split_heads(a, heads):
    """``(batch, T, d) -> (batch, heads, T, d / heads)``."""
    b, t, d = a.shape
    return a.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def merge_heads(a):
    """``(batch, heads, T, dh) -> (batch, T, heads * dh)``."""
    b, h, t, dh = a.shape
    return a.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


@recorded
def MultiHeadAttention(num_heads: int, *, causal: bool = False, memory: str = "full",
                       block_size: int = 128, w_init=glorot_uniform, b_init=zeros,
                       dtype=jnp.float32) -> Layer:
    """Multi-head self-attention with params ``{"w_qkv": (d, 3d), "b_qkv": (3d,),
    "w_o": (d, d), "b_o": (d,)}`` on ``(batch, T, d)`` sequences.

    Args:
      num_heads: number of heads; must divide the width ``d``.
      causal: mask the future (position ``t`` attends to positions ``<= t``).
      memory: ``"full"`` keeps the attention probabilities for the backward;
        ``"lean"`` keeps only each row's log-sum-exp and recomputes them in blocks
        (see the module docstring). Same gradients either way.
      block_size: rows per block of the ``"lean"`` core (ignored by ``"full"``).
      w_init, b_init: initializers of ``w_qkv``/``w_o`` and of the biases.
      dtype: parameter dtype.
    """
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise ValueError(f"MultiHeadAttention: num_heads must be a positive int, got {num_heads!r}")
    if memory not in MEMORY:
        raise ValueError(f"MultiHeadAttention: memory must be one of {MEMORY}, got {memory!r}")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"MultiHeadAttention: block_size must be a positive int, "
                         f"got {block_size!r}")
    name = (f"MultiHeadAttention({num_heads}" + (", causal=True" if causal else "")
            + (f", memory='lean', block_size={block_size}" if memory == "lean" else "") + ")")

    def check_width(d):
        if d % num_heads:
            raise ValueError(f"{name}: the width d={d} is not divisible by num_heads="
                             f"{num_heads} (each head takes a contiguous d/num_heads slice); "
                             f"choose num_heads dividing d, or change d")

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must be (T, d), got {tuple(input_shape)}")
        d = input_shape[-1]
        check_width(d)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        return {"w_qkv": w_init(k1, (d, 3 * d), dtype), "b_qkv": b_init(k2, (3 * d,), dtype),
                "w_o": w_init(k3, (d, d), dtype), "b_o": b_init(k4, (d,), dtype)}

    def fwd(params, x, *, key=None):
        w_qkv, b_qkv, w_o, b_o = (params[k] for k in ("w_qkv", "b_qkv", "w_o", "b_o"))
        pair = isinstance(x, (tuple, list))
        x, mask = split_padded(name, x)
        _checks.floating(name, x)
        _checks.rank(name, x, 3, "(batch, time, features)",
                     "A single sequence needs a batch axis: x[None].")
        d = w_o.shape[0]
        if w_qkv.shape != (d, 3 * d):
            raise ValueError(f"{name}: w_qkv has shape {w_qkv.shape}, expected (d, 3d) = "
                             f"{(d, 3 * d)} for w_o of shape {w_o.shape}; pass the params "
                             f"from init")
        _checks.last_axis(name, x, d, f"its kernel w_qkv of shape {w_qkv.shape}")
        check_width(d)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: empty input of shape {x.shape}; needs at least one "
                             f"sequence of at least one step")
        qkv = x @ w_qkv + b_qkv
        q, k, v = (split_heads(a, num_heads) for a in jnp.split(qkv, 3, axis=-1))
        q = q * (1 / math.sqrt(d // num_heads))
        o, kept = core_forward(q, k, v, memory=memory, causal=causal, block=block_size,
                               key_mask=mask)
        o = merge_heads(o)
        return o @ w_o + b_o, (x, w_qkv, q, k, v, o, kept, w_o, mask, Static(pair))

    def qkv_cotangent(res, dy):
        """The cotangent of ``qkv = x @ w_qkv + b_qkv``, ``(batch, T, 3d)``."""
        x, w_qkv, q, k, v, o, kept, w_o, mask, _ = res
        do = split_heads(dy @ w_o.T, num_heads)
        dq, dk, dv = core_backward(q, k, v, split_heads(o, num_heads), kept, do, memory=memory,
                                   causal=causal, block=block_size, key_mask=mask)
        dq = dq * (1 / math.sqrt(q.shape[-1]))
        return jnp.concatenate([merge_heads(a) for a in (dq, dk, dv)], axis=-1)

    def bwd(res, dy):
        x, w_qkv, q, k, v, o, kept, w_o, _, pair = res
        axes = tuple(range(dy.ndim - 1))
        dqkv = qkv_cotangent(res, dy)
        d = x.shape[-1]
        dw_qkv = x.reshape(-1, d).T @ dqkv.reshape(-1, 3 * d)
        dw_o = o.reshape(-1, d).T @ dy.reshape(-1, d)
        dparams = {"w_qkv": dw_qkv, "b_qkv": jnp.sum(dqkv, axis=axes),
                   "w_o": dw_o, "b_o": jnp.sum(dy, axis=axes)}
        dparams = {k: a.astype(w_o.dtype) for k, a in dparams.items()}
        dx = (dqkv @ w_qkv.T).astype(x.dtype)
        return dparams, ((dx, None) if pair.value else dx)

    # fnnet.per_example: both projections are Dense layers over the T positions
    def per_example(res, dy):
        x, o, w_o, dqkv = res[0], res[5], res[7], qkv_cotangent(res, dy)
        g = {"w_qkv": jnp.einsum("nti,nto->nio", x, dqkv), "b_qkv": jnp.sum(dqkv, axis=1),
             "w_o": jnp.einsum("nti,nto->nio", o, dy), "b_o": jnp.sum(dy, axis=1)}
        return {k: a.astype(w_o.dtype) for k, a in g.items()}

    def sqnorm(res, dy):  # ghost norms of the two projections, no (n, d, 3d) array
        x, o, dqkv = res[0], res[5], qkv_cotangent(res, dy)
        bias = lambda a: jnp.sum(jnp.square(jnp.sum(a, axis=1)), axis=-1)
        return ghost_sqnorm(x, dqkv) + bias(dqkv) + ghost_sqnorm(o, dy) + bias(dy)

    def scaled_grad(res, dy, factor):
        """``sum_i factor[i] g_i``: the core's backward is linear in ``dy`` and per
        example, so ``dqkv`` of the scaled ``dy`` is ``factor[i] dqkv_i``; scaling AFTER
        the core reuses the ``dqkv`` that ``bwd`` and ``sqnorm`` computed from the same
        ``dy`` (the same expression: XLA computes it once), so DP-SGD's clipped sum runs
        the T x T backward once, not twice."""
        x, o, w_o = res[0], res[5], res[7]
        f = factor.reshape(-1, 1, 1)
        dqkv, dy = qkv_cotangent(res, dy) * f.astype(dy.dtype), dy * f.astype(dy.dtype)
        d = x.shape[-1]
        g = {"w_qkv": x.reshape(-1, d).T @ dqkv.reshape(-1, 3 * d),
             "b_qkv": jnp.sum(dqkv, axis=(0, 1)),
             "w_o": o.reshape(-1, d).T @ dy.reshape(-1, d), "b_o": jnp.sum(dy, axis=(0, 1))}
        return {k: a.astype(w_o.dtype) for k, a in g.items()}

    return named(name, init, fwd, bwd, per_example=per_example, sqnorm=sqnorm,
                 scaled_grad=scaled_grad)
