"""Transformer blocks, composed from fnnet's layers and combinators (no new backward).

A pre-LayerNorm block (GPT-2's) is two residual branches::

    x = x + MultiHeadAttention(LayerNorm(x))          attention branch
    x = x + MLPBlock(LayerNorm(x))                    MLP branch
    MLPBlock(d, hidden) = Dense(hidden) -> Gelu(tanh) -> Dense(d)

written as ``serial(residual(serial(LayerNorm(), MultiHeadAttention(...))),
residual(serial(LayerNorm(), MLPBlock(...))))``. Its backward is the chain rule
over those pieces: ``serial`` walks them in reverse and each ``residual`` adds the
skip path's ``dy`` to its branch's ``dx``; every piece's VJP is proven on its
own, so the block's is too. The params are the nested tuples ``serial`` makes::

    ((ln1, attention), (ln2, (dense_in, (), dense_out)))

Dense acts on the last axis, so the same layers serve ``(batch, T, d)`` sequences.
The blocks are plain ``serial`` layers (their names say what they hold), so
``fn.gradient_diagnostics`` and ``fn.find_nonfinite`` see every piece inside.

A Llama block (pre-RMSNorm, grouped-query attention with rotary positions, SwiGLU)
has the same shape::

    x = x + GroupedQueryAttention(RMSNorm(x))
    x = x + SwiGLU(RMSNorm(x))

with params ``((rms1, attention), (rms2, swiglu))``: both are :func:`pre_norm_block`.

**Padding masks through a model.** The attention layers take ``(x, mask)`` pairs
(``mask`` ``(batch, T)`` booleans, True for a real token). For the mask to reach
every attention layer of a model, it rides along the residual stream as the
second entry of the pair: :func:`pass_mask` wraps each layer (same name, params
and backward): ``(x, mask) -> (layer(x), mask)``, the attention gets the pair
itself (``uses_mask=True``), the output head drops the mask (``keep=False``); and
:func:`masked_residual` is ``residual`` on pairs (``(x + y, mask)``). On a plain
array both are exactly the wrapped layer / ``residual``, so a model built from them
takes ``ids`` or ``(ids, mask)`` with the same params. :func:`TransformerBlock`,
:func:`LlamaBlock` and so ``fn.models.gpt``/``gpt2``/``llama`` are built this way
(:func:`pre_norm_block`); both are graphs (:mod:`fnnet.walk`), so every tool
(per-example gradients, diagnostics, ...) sees the wrapped layers with either input.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .combinators import residual, serial
from .core import Graph, Layer, Static, combinator, meta
from .structure import recorded
from .initializers import glorot_uniform
from .layers import (Dense, Gelu, GroupedQueryAttention, LayerNorm, MultiHeadAttention, RMSNorm,
                     SwiGLU)


def MLPBlock(features: int, hidden: int) -> Layer:
    """``Dense(hidden) -> Gelu(approximate=True) -> Dense(features)`` (GPT-2's MLP)."""
    return serial(Dense(hidden), Gelu(approximate=True), Dense(features))


def TransformerBlock(d_model: int, num_heads: int, *, mlp_ratio: int = 4, causal: bool = True,
                     memory: str = "full", block_size: int = 128, hidden: int | None = None,
                     eps: float = 1e-5) -> Layer:
    """A pre-LayerNorm transformer block on ``(batch, T, d_model)`` sequences (or
    ``(x, mask)`` pairs: a padding mask, see the module docstring).

    ``causal``, ``memory`` and ``block_size`` go to :func:`~fnnet.MultiHeadAttention`;
    the MLP has ``hidden`` units (default ``mlp_ratio * d_model``); ``eps`` is the
    LayerNorms'.
    """
    for what, v in (("d_model", d_model), ("num_heads", num_heads), ("mlp_ratio", mlp_ratio),
                    ("hidden", mlp_ratio * d_model if hidden is None else hidden)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"TransformerBlock: {what} must be a positive int, got {v!r}")
    if d_model % num_heads:
        raise ValueError(f"TransformerBlock: d_model={d_model} is not divisible by "
                         f"num_heads={num_heads}; choose num_heads dividing d_model")
    attention = MultiHeadAttention(num_heads, causal=causal, memory=memory, block_size=block_size)
    mlp = MLPBlock(d_model, mlp_ratio * d_model if hidden is None else hidden)
    return pre_norm_block(LayerNorm(eps), attention, LayerNorm(eps), mlp)


def pre_norm_block(norm1: Layer, attention: Layer, norm2: Layer, mlp: Layer) -> Layer:
    """``x + attention(norm1(x))``, then ``x + mlp(norm2(x))``, passing a padding mask to
    the attention (the shape of GPT-2's and Llama's blocks)."""
    return serial(masked_residual(serial(pass_mask(norm1), pass_mask(attention, uses_mask=True))),
                  masked_residual(serial(pass_mask(norm2), pass_mask(mlp))))


# --- padding masks along the residual stream ---------------------------------------------

def _is_pair(x) -> bool:
    return isinstance(x, (tuple, list))


def _pair(where: str, x):
    if len(x) != 2:
        raise ValueError(f"{where}: a tuple input must be (x, mask) with mask (batch, T) "
                         f"booleans (True = a real token), got a tuple of {len(x)}")
    return x


@recorded
def pass_mask(layer: Layer, *, keep: bool = True, uses_mask: bool = False) -> Layer:
    """``layer`` on ``x``; on a pair ``(x, mask)``: ``(layer(x), mask)``, or ``(layer((x,
    mask)), mask)`` for a layer that reads the mask itself (``uses_mask=True``: the
    attention layers), or the output alone with ``keep=False`` (the output head).

    Same name, params and ``init`` as ``layer`` (a ``serial`` is wrapped piece by
    piece), a wrapper graph the tools see through; the mask's cotangent is ``None``."""
    if not isinstance(layer, Layer):
        raise TypeError(f"pass_mask: argument is {layer!r}, not a fnnet Layer")
    inner = meta(layer).graph
    if inner is not None and inner.kind == "serial" and not uses_mask:
        # serial(a, b) -> serial(pass_mask(a), pass_mask(b)): same params, and the pieces
        # keep their own rules (a mask passes beside each)
        kids = inner.children
        return serial(*map(pass_mask, kids[:-1]), pass_mask(kids[-1], keep=keep))
    if layer.has_state:
        raise ValueError(f"pass_mask: {layer.name} has layer state; not supported")

    def forward(params, x, key, state, run):
        if not _is_pair(x):
            y, res = run(0, params, x, key, state)
            return y, (res, Static(False))
        h, mask = _pair(layer.name, x)
        y, res = run(0, params, x if uses_mask else h, key, state)
        return ((y, mask) if keep else y), (res, Static(True))

    def backward(res, dy, back):
        paired = res[1].value
        dparams, dx = back(0, res[0], dy[0] if paired and keep else dy)
        return dparams, ((dx, None) if paired and not uses_mask else dx)

    reads = lambda x: [(0, x if uses_mask or not _is_pair(x) else x[0])]
    graph = Graph("pass_mask", (layer,), forward, backward, params=lambda p: (p,),
                  residuals=lambda r: (r[0],), wrapper=True, output=0, reads=reads)
    return combinator(layer.name, layer.init, graph, input_dtype=meta(layer).input_dtype)


@recorded
def masked_residual(branch: Layer) -> Layer:
    """``x + branch(x)``; on a pair ``(x, mask)``: ``(x + y, mask)`` where ``(y, mask) =
    branch((x, mask))`` (the branch carries the mask through, e.g.
    ``serial(pass_mask(RMSNorm()), pass_mask(attention, uses_mask=True))``). Params and
    residuals are ``branch``'s own: ``residual``'s graph, extended to pairs."""
    if not isinstance(branch, Layer):
        raise TypeError(f"masked_residual: argument is {branch!r}, not a fnnet Layer")
    plain = residual(branch)
    name, graph = plain.name, meta(plain).graph

    def forward(params, x, key, state, run):
        if not _is_pair(x):
            return graph.forward(params, x, key, state, run)
        h, mask = _pair(name, x)
        y, res = run(0, params, x, key, state)
        if not _is_pair(y) or jnp.shape(y[0]) != jnp.shape(h):
            raise ValueError(f"{name}: the branch maps (x, mask) with x of shape "
                             f"{tuple(jnp.shape(h))} to {jax.tree.map(jnp.shape, y)}; "
                             f"x + branch(x) needs (an array of x's shape, mask)")
        return (h + y[0], mask), res

    def backward(res, dy, back):
        if not _is_pair(dy):
            return graph.backward(res, dy, back)
        dparams, dx = back(0, res, dy)
        return dparams, ((dx[0] + dy[0]).astype(dx[0].dtype), None)

    return combinator(name, plain.init,
                      dataclasses.replace(graph, forward=forward, backward=backward),
                      input_dtype=meta(branch).input_dtype)


def LlamaBlock(d_model: int, num_heads: int, hidden: int, *, num_kv_heads: int | None = None,
               head_dim: int | None = None, rope_theta: float | None = 10000.0,
               eps: float = 1e-6, attention_bias: bool = False, mlp_bias: bool = False,
               memory: str = "full", block_size: int = 128, w_init=glorot_uniform) -> Layer:
    """A Llama decoder block on ``(batch, T, d_model)`` (or ``(x, mask)`` pairs)::

        pre_norm_block(RMSNorm(eps), GroupedQueryAttention(...), RMSNorm(eps), SwiGLU(hidden))

    On plain arrays that is ``serial(residual(serial(RMSNorm, GQA)), residual(serial(RMSNorm,
    SwiGLU)))``; params ``((rms1, attention), (rms2, swiglu))``. ``num_kv_heads``,
    ``head_dim``, ``rope_theta``, ``memory``, ``block_size`` and ``attention_bias`` go to
    :func:`~fnnet.GroupedQueryAttention` (causal), ``mlp_bias`` to
    :func:`~fnnet.SwiGLU`; ``w_init`` initialises every kernel.
    """
    for what, v in (("d_model", d_model), ("num_heads", num_heads), ("hidden", hidden)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"LlamaBlock: {what} must be a positive int, got {v!r}")
    if head_dim is None and d_model % num_heads:
        raise ValueError(f"LlamaBlock: d_model={d_model} is not divisible by num_heads="
                         f"{num_heads}; choose num_heads dividing d_model, or give head_dim")
    attention = GroupedQueryAttention(num_heads, num_kv_heads, head_dim=head_dim,
                                      rope_theta=rope_theta, causal=True, bias=attention_bias,
                                      memory=memory, block_size=block_size, w_init=w_init)
    return pre_norm_block(RMSNorm(eps), attention, RMSNorm(eps),
                          SwiGLU(hidden, bias=mlp_bias, w_init=w_init))
