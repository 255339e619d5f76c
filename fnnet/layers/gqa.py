"""GroupedQueryAttention: Llama's self-attention -- rotary positions, and ``num_kv_heads``
key/value heads each shared by a group of query heads.

Shapes: ``x (batch, T, d)``; ``H = num_heads``; ``KV = num_kv_heads`` divides ``H``
(``KV = H``: multi-head, ``KV = 1``: multi-query); ``G = H / KV`` query heads per
key/value head; ``dh = head_dim`` (default ``d / H``). Params::

    {"w_q": (d, H dh), "w_k": (d, KV dh), "w_v": (d, KV dh), "w_o": (H dh, d)}
    + {"b_q": (H dh,), "b_k": (KV dh,), "b_v": (KV dh,), "b_o": (d,)}   with bias=True

``y (batch, T, d)``. Head ``i`` is the ``i``-th contiguous ``dh``-slice of q (of k, v).

Forward (``c = 1 / sqrt(dh)``; ``R`` the rotation of :mod:`.rope` at positions
``0 .. T-1``, skipped when ``rope_theta`` is None; ``M`` the mask, below)::

    q = x w_q + b_q,   k = x w_k + b_k,   v = x w_v + b_v     split heads: (b, H | KV, T, dh)
    q = c R(q),        k = R(k)
    k, v repeated G times along heads          query head h reads key/value head h // G
    s = q k^T + M,   p = softmax(s),   o = p v                the attention core
    y = merge(o) w_o + b_o

Backward (the core's backward is :mod:`.attention`'s ``full_backward`` or
:mod:`.flash_attention`'s ``lean_backward``, as for :class:`MultiHeadAttention`)::

    dw_o = o^T dy,   db_o = sum(dy),   do = dy w_o^T           (split heads)
    (dq, dk_G, dv_G) = core backward            from p (full) or p recomputed by blocks (lean)
    dk = sum of dk_G over each group, dv likewise               the VJP of the repeat
    dq = R^T(c dq),  dk = R^T(dk)                R^T: the rotation by -angle (rope's VJP)
    dw_q = x^T dq,  db_q = sum(dq)   (k, v alike)               (merge heads)
    dx = dq w_q^T + dk w_k^T + dv w_v^T

The mask ``M`` is ``-inf`` where a query may not see a key: the future when ``causal``
(default) and, with a padding mask, every padding key. **Padding mask**: call the
layer on the pair ``(x, mask)`` instead of ``x``, ``mask`` ``(batch, T)`` booleans
(or 0/1 integers: Hugging Face's ``attention_mask``), True for a real token. Its
cotangent is ``None`` (``dx`` is the pair ``(dx, None)``). A query row that sees no key
at all (a padding position under left padding) outputs ``o = 0`` and gets a zero
gradient, never NaN. Positions stay ``0 .. T-1`` whatever the mask (as in Hugging
Face's forward without ``position_ids``).

Residuals: ``(x, cos, sin, q, k, v, o, kept, mask)`` and the weights, where ``kept`` is
``p`` (``memory="full"``, ``batch * H * T^2`` numbers) or each row's log-sum-exp
(``memory="lean"``, FlashAttention's scheme, ``block_size`` key blocks). ``k, v`` are
kept un-repeated.

Pure functions for a key/value-cache decode path, the layer's own math:
:func:`project_qkv` (projections + rope at given positions), :func:`attend` (the
core on cached keys, any boolean mask), :func:`project_out`.

Hugging Face: ``LlamaAttention`` (eager) with ``q_proj.weight = w_q.T`` (``k, v, o``
alike; biases verbatim when ``attention_bias``). Default init: ``w_init`` (Xavier
uniform) for the four kernels, zero biases.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, Static, named
from ..initializers import glorot_uniform, zeros
from ..structure import recorded
from ._projections import linear as _linear
from . import _projections
from .attention import (MEMORY, core_backward, merge_heads as _merge, split_heads as _split,
                        core_forward, full_forward, split_padded)
from .rope import apply_rope, apply_rope_bwd, rope_angles

PROJECTIONS = ("q", "k", "v")


# --- heads ----------------------------------------------------------------------------

def repeat_kv(a, groups: int):
    """``(batch, KV, T, dh) -> (batch, KV * groups, T, dh)``: head ``h`` is ``a[:, h // groups]``."""
    return a if groups == 1 else jnp.repeat(a, groups, axis=1)


def sum_groups(a, groups: int):
    """The VJP of :func:`repeat_kv`: sum each group of ``groups`` heads."""
    if groups == 1:
        return a
    b, h, t, dh = a.shape
    return a.reshape(b, h // groups, groups, t, dh).sum(axis=2)


# --- the pure functions (the layer and a decode path share them) ------------------------

def project_qkv(params, x, positions, *, num_heads: int, num_kv_heads: int | None = None,
                rope_theta: float | None = 10000.0):
    """``(q, k, v)`` of ``x (batch, T, d)``: ``q (batch, H, T, dh)``, ``k, v (batch, KV,
    T, dh)``, with rope applied to ``q`` and ``k`` at integer ``positions`` (``(T,)`` or
    ``(batch, T)``; none when ``rope_theta`` is None). ``q`` is NOT scaled by
    ``1/sqrt(dh)`` (:func:`attend` does it)."""
    dh = params["w_q"].shape[1] // num_heads
    cos, sin = _angles(positions, dh, rope_theta, x.dtype)
    return _heads(params, x, cos, sin, num_heads, num_kv_heads or num_heads)


def _angles(positions, dh, rope_theta, dtype):
    if rope_theta is None:
        return None, None
    return rope_angles(positions, dh, rope_theta, dtype)


def _heads(params, x, cos, sin, heads, kv):
    """The projections split into heads, rope applied to q and k when ``cos`` is given."""
    q, k, v = (_linear(params, n, x) for n in PROJECTIONS)
    q, k, v = _split(q, heads), _split(k, kv), _split(v, kv)
    if cos is not None:
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    return q, k, v


def attend(q, k, v, mask=None):
    """``o (batch, T_q, H dh)``: ``softmax(q k^T / sqrt(dh) + M) v`` with each key/value
    head shared by ``H / KV`` query heads. ``q (batch, H, T_q, dh)`` (unscaled), ``k, v
    (batch, KV, T_k, dh)`` (e.g. a cache); ``mask``: booleans broadcastable to ``(batch,
    T_q, T_k)``, True where a query may see a key (None: every key). Rows that see no key
    give 0. Hidden keys still enter ``p v`` with ``p = 0``, so their values must be finite
    (start a cache with zeros, not NaN). The layer's full core
    (:func:`~fnnet.layers.attention.full_forward`)."""
    groups = q.shape[1] // k.shape[1]
    q = q * (1 / math.sqrt(q.shape[-1]))
    m = None if mask is None else jnp.asarray(mask)[..., None, :, :]
    o, _ = full_forward(q, repeat_kv(k, groups), repeat_kv(v, groups), causal=False, mask=m)
    return _merge(o)


def project_out(params, o):
    """``o @ w_o + b_o`` for ``o (batch, T, H dh)``."""
    return _linear(params, "o", o)


# --- the layer ------------------------------------------------------------------------

def _positive(name, what, v, allow_none=False):
    if allow_none and v is None:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")


@recorded
def GroupedQueryAttention(num_heads: int, num_kv_heads: int | None = None, *,
                          head_dim: int | None = None, rope_theta: float | None = 10000.0,
                          causal: bool = True, bias: bool = False, memory: str = "full",
                          block_size: int = 128, w_init=glorot_uniform, b_init=zeros,
                          dtype=jnp.float32) -> Layer:
    """Grouped-query self-attention with rotary positions on ``(batch, T, d)`` sequences
    (or ``(x, mask)`` pairs; see the module docstring).

    Args:
      num_heads: query heads ``H``.
      num_kv_heads: key/value heads ``KV`` dividing ``H`` (default ``H``; 1: multi-query).
      head_dim: ``dh`` (default ``d / H`` at init; a width ``H dh != d`` is allowed).
      rope_theta: the rotary base (Llama's ``rope_theta``); None: no rotary embedding.
      causal: mask the future (default, a decoder).
      bias: biases on the four projections (Hugging Face's ``attention_bias``).
      memory, block_size: the core, ``"full"`` (keeps ``p``) or ``"lean"`` (keeps each
        row's log-sum-exp, recomputes ``p`` in ``block_size`` key blocks).
      w_init, b_init, dtype: initializers and parameter dtype.
    """
    kv = num_heads if num_kv_heads is None else num_kv_heads
    _positive("GroupedQueryAttention", "num_heads", num_heads)
    _positive("GroupedQueryAttention", "num_kv_heads", kv)
    _positive("GroupedQueryAttention", "head_dim", head_dim, allow_none=True)
    if num_heads % kv:
        raise ValueError(f"GroupedQueryAttention: num_kv_heads={kv} must divide num_heads="
                         f"{num_heads} (each key/value head serves a group of query heads)")
    if rope_theta is not None and (not isinstance(rope_theta, (int, float))
                                   or isinstance(rope_theta, bool) or rope_theta <= 0):
        raise ValueError(f"GroupedQueryAttention: rope_theta must be a positive number or "
                         f"None, got {rope_theta!r}")
    if memory not in MEMORY:
        raise ValueError(f"GroupedQueryAttention: memory must be one of {MEMORY}, got {memory!r}")
    _positive("GroupedQueryAttention", "block_size", block_size)
    groups = num_heads // kv
    name = (f"GroupedQueryAttention({num_heads}, {kv}"
            + (f", head_dim={head_dim}" if head_dim else "")
            + (f", rope_theta={rope_theta:g}" if rope_theta is not None else ", rope_theta=None")
            + ("" if causal else ", causal=False") + (", bias=True" if bias else "")
            + (f", memory='lean', block_size={block_size}" if memory == "lean" else "") + ")")

    def init(key, input_shape):
        if input_shape and not isinstance(input_shape[0], int):  # ((T, d), (T,)): (x, mask)
            input_shape = input_shape[0]
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must be (T, d), got {tuple(input_shape)}")
        d = input_shape[-1]
        dh = head_dim or d // num_heads
        if not head_dim and d % num_heads:
            raise ValueError(f"{name}: the width d={d} is not divisible by num_heads="
                             f"{num_heads}; choose num_heads dividing d or give head_dim")
        if rope_theta is not None and dh % 2:
            raise ValueError(f"{name}: head_dim={dh} must be even for the rotary embedding "
                             f"(features rotate in pairs)")
        shapes = {"q": (d, num_heads * dh), "k": (d, kv * dh), "v": (d, kv * dh),
                  "o": (num_heads * dh, d)}
        return _projections.init(key, shapes, bias, w_init, b_init, dtype)

    def check(params, x):
        _projections.check_keys(name, params, PROJECTIONS + ("o",), bias)
        _checks.floating(name, x)
        _checks.rank(name, x, 3, "(batch, time, features)",
                     "A single sequence needs a batch axis: x[None].")
        w_q = params["w_q"]
        _checks.last_axis(name, x, w_q.shape[0], f"its kernel w_q of shape {w_q.shape}")
        if w_q.shape[1] % num_heads:
            raise ValueError(f"{name}: w_q has {w_q.shape[1]} columns, not a multiple of "
                             f"num_heads={num_heads}")
        dh = w_q.shape[1] // num_heads
        d = w_q.shape[0]
        for n, s in (("w_k", (d, kv * dh)), ("w_v", (d, kv * dh)),
                     ("w_o", (num_heads * dh, params["w_o"].shape[1]))):
            if params[n].shape != s:
                raise ValueError(f"{name}: {n} has shape {params[n].shape}, expected {s} "
                                 f"(num_heads={num_heads}, num_kv_heads={kv}, head_dim={dh}, "
                                 f"d={d}); pass the params from init")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: empty input of shape {x.shape}; needs at least one "
                             f"sequence of at least one step")
        return dh

    def fwd(params, x, *, key=None):
        pair = isinstance(x, (tuple, list))
        x, mask = split_padded(name, x)
        dh = check(params, x)
        cos, sin = _angles(jnp.arange(x.shape[1]), dh, rope_theta, x.dtype)
        q, k, v = _heads(params, x, cos, sin, num_heads, kv)
        q = q * (1 / math.sqrt(dh))
        kr, vr = repeat_kv(k, groups), repeat_kv(v, groups)
        o, kept = core_forward(q, kr, vr, memory=memory, causal=causal, block=block_size,
                               key_mask=mask)
        o = _merge(o)
        weights = {n: a for n, a in params.items() if n.startswith("w_")}
        return project_out(params, o), (x, cos, sin, q, k, v, o, kept, mask, weights,
                                        Static(pair))

    def projection_cotangents(res, dy):
        """``(dq, dk, dv)`` of the projections' outputs, merged: ``(batch, T, H|KV dh)``."""
        x, cos, sin, q, k, v, o, kept, mask, w, _ = res
        do = _split(dy @ w["w_o"].T, num_heads)
        kr, vr = repeat_kv(k, groups), repeat_kv(v, groups)
        dq, dk, dv = core_backward(q, kr, vr, _split(o, num_heads), kept, do, memory=memory,
                                   causal=causal, block=block_size, key_mask=mask)
        dq = dq * (1 / math.sqrt(q.shape[-1]))
        dk, dv = sum_groups(dk, groups), sum_groups(dv, groups)
        if cos is not None:
            dq, dk = apply_rope_bwd(dq, cos, sin), apply_rope_bwd(dk, cos, sin)
        return _merge(dq), _merge(dk), _merge(dv)

    def bwd(res, dy):
        x, o, w, pair = res[0], res[6], res[9], res[10].value
        dq, dk, dv = projection_cotangents(res, dy)
        flat = lambda a: a.reshape(-1, a.shape[-1])
        dparams = {"w_q": flat(x).T @ flat(dq), "w_k": flat(x).T @ flat(dk),
                   "w_v": flat(x).T @ flat(dv), "w_o": flat(o).T @ flat(dy)}
        if bias:
            dparams.update({"b_q": flat(dq).sum(0), "b_k": flat(dk).sum(0),
                            "b_v": flat(dv).sum(0), "b_o": flat(dy).sum(0)})
        dparams = {n: a.astype(w["w_o"].dtype) for n, a in dparams.items()}
        dx = (dq @ w["w_q"].T + dk @ w["w_k"].T + dv @ w["w_v"].T).astype(x.dtype)
        return dparams, ((dx, None) if pair else dx)

    # fnnet.per_example: the four projections are Dense layers over the T positions
    def _pairs(res, dy):
        x, o = res[0], res[6]
        dq, dk, dv = projection_cotangents(res, dy)
        return {"q": (x, dq), "k": (x, dk), "v": (x, dv), "o": (o, dy)}

    return named(name, init, fwd, bwd,
                 per_example=lambda res, dy: _projections.per_example(
                     _pairs(res, dy), bias, res[9]["w_o"].dtype),
                 sqnorm=lambda res, dy: _projections.sqnorm(_pairs(res, dy), bias))  # ghost
