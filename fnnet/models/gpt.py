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

It IS GPT-2's architecture (:func:`fnnet.models.gpt2` with ``n_inner = mlp_ratio *
d_model``), and carries a ``"gpt2"`` :class:`~fnnet.models.config.ModelConfig`: it can
be saved in the Hugging Face format and sampled with ``fn.models.generate``.
"""

from __future__ import annotations

from ..core import Layer
from .gpt2 import gpt2


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
    if not isinstance(mlp_ratio, int) or isinstance(mlp_ratio, bool) or mlp_ratio < 1:
        raise ValueError(f"gpt: mlp_ratio must be a positive int, got {mlp_ratio!r}")
    return gpt2(vocab_size, max_len, d_model, num_heads, num_layers,
                n_inner=mlp_ratio * d_model, tie_embeddings=tie_embeddings, memory=memory,
                block_size=block_size, name="gpt")
