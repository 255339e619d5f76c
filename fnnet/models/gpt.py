"""``gpt``: a GPT-2-style decoder-only transformer, built from fnnet's pieces.

::

    ids (batch, T)  ->  Embedding(V, d)                       token vectors
                    ->  PositionalEmbedding(max_len)          + learned position vectors
                    ->  TransformerBlock(d, heads) x N        pre-LayerNorm, causal
                    ->  LayerNorm()                           final norm
                    ->  Unembed(V)                            logits = h @ table^T
    tied: Unembed's table IS Embedding's table (fn.tie), so its gradient is the
    sum of the two uses.

It is a plain ``serial`` (wrapped by ``tie``): params are a tuple with one entry
per layer, ``params[-1] == {"table": None}`` (the tied output projection), and
the backward is the composition of the layers' hand-written VJPs. Train it with
``fn.losses.softmax_cross_entropy`` on logits ``(batch, T, V)`` and next-token
labels ``(batch, T)`` (the mean over all positions).
"""

from __future__ import annotations

from ..blocks import TransformerBlock
from ..combinators import serial
from ..core import Layer
from ..initializers import normal
from ..layers import Embedding, LayerNorm, PositionalEmbedding, Unembed
from ..tie import tie


def gpt(vocab_size: int, max_len: int, *, d_model: int = 128, num_heads: int = 4,
        num_layers: int = 4, mlp_ratio: int = 4, memory: str = "full", block_size: int = 128,
        tie_embeddings: bool = True) -> Layer:
    """A causal transformer language model over ``vocab_size`` tokens.

    Args:
      vocab_size: number of token ids (``0 .. vocab_size - 1``).
      max_len: longest sequence (rows of the positional table).
      d_model, num_heads, num_layers, mlp_ratio: width, heads per block, number of
        blocks, MLP hidden units per width.
      memory, block_size: the attention core (see :func:`fnnet.MultiHeadAttention`).
      tie_embeddings: share the token embedding with the output projection.

    Init with the id shape alone: ``params = model.init(key, (T,))``. Token and
    position tables start at ``N(0, 0.02^2)`` (GPT-2's).
    """
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"gpt: num_layers must be a positive int, got {num_layers!r}")
    block = TransformerBlock(d_model, num_heads, mlp_ratio=mlp_ratio, causal=True,
                             memory=memory, block_size=block_size)
    layers = [Embedding(vocab_size, d_model, table_init=normal(0.02)),
              PositionalEmbedding(max_len), *[block] * num_layers, LayerNorm(),
              Unembed(vocab_size)]
    net = serial(*layers)
    return tie(net, (0, "table"), (len(layers) - 1, "table")) if tie_embeddings else net
