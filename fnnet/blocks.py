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
"""

from __future__ import annotations

from .combinators import residual, serial
from .core import Layer
from .layers import Dense, Gelu, LayerNorm, MultiHeadAttention


def MLPBlock(features: int, hidden: int) -> Layer:
    """``Dense(hidden) -> Gelu(approximate=True) -> Dense(features)`` (GPT-2's MLP)."""
    return serial(Dense(hidden), Gelu(approximate=True), Dense(features))


def TransformerBlock(d_model: int, num_heads: int, *, mlp_ratio: int = 4, causal: bool = True,
                     memory: str = "full", block_size: int = 128) -> Layer:
    """A pre-LayerNorm transformer block on ``(batch, T, d_model)`` sequences.

    ``causal``, ``memory`` and ``block_size`` go to :func:`~fnnet.MultiHeadAttention`;
    the MLP has ``mlp_ratio * d_model`` hidden units.
    """
    for what, v in (("d_model", d_model), ("num_heads", num_heads), ("mlp_ratio", mlp_ratio)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"TransformerBlock: {what} must be a positive int, got {v!r}")
    if d_model % num_heads:
        raise ValueError(f"TransformerBlock: d_model={d_model} is not divisible by "
                         f"num_heads={num_heads}; choose num_heads dividing d_model")
    attention = MultiHeadAttention(num_heads, causal=causal, memory=memory, block_size=block_size)
    return serial(residual(serial(LayerNorm(), attention)),
                  residual(serial(LayerNorm(), MLPBlock(d_model, mlp_ratio * d_model))))
