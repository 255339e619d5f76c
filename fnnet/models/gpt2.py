"""``gpt2``: GPT-2's architecture, with Hugging Face's hyperparameter names.

::

    ids (batch, T)  ->  Embedding(V, d)                       wte
                    ->  PositionalEmbedding(n_positions)      + wpe
                    ->  TransformerBlock(d, heads) x N        pre-LayerNorm, causal, tanh-GELU MLP
                    ->  LayerNorm(eps)                        ln_f
                    ->  Unembed(V)                            lm_head, tied to wte (fn.tie)

This is exactly the layout of ``fn.models.gpt`` (which is GPT-2 with other argument
names). Params::

    ({"table": (V, d)},                                        wte
     {"table": (P, d)},                                        wpe
     ((ln_1, {"w_qkv": (d, 3d), "b_qkv", "w_o": (d, d), "b_o"}),
      (ln_2, ({"w": (d, n_inner), "b"}, (), {"w": (n_inner, d), "b"}))),     x N
     {"scale", "bias"},                                        ln_f
     {"table": None})                                          lm_head (tied)

GPT-2's ``Conv1D`` weights are already ``(in, out)``: ``c_attn.weight`` IS ``w_qkv``
(q, k, v packed along the output axis), ``c_proj.weight`` is ``w_o``, ``mlp.c_fc`` and
``mlp.c_proj`` the two Dense kernels. GPT-2's ``gelu_new`` is ``Gelu(approximate=True)``
(the same formula, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``; the equality
tests check it against ``transformers``' own to float64 rounding), so no new layer.

Input: ids ``(batch, T)``, or ``(ids, mask)`` with a padding mask ``(batch, T)``
(True for real tokens, Hugging Face's ``attention_mask``): padding keys are hidden
from every query; positions stay ``0 .. T-1``. Output: logits ``(batch, T, V)``.
"""

from __future__ import annotations

from ..blocks import TransformerBlock, pass_mask
from ..core import Layer
from ..initializers import normal
from ..layers import Embedding, LayerNorm, PositionalEmbedding, Unembed
from .config import ModelConfig, language_model


def gpt2(vocab_size: int, n_positions: int, d_model: int, num_heads: int, num_layers: int, *,
         n_inner: int | None = None, eps: float = 1e-5, tie_embeddings: bool = True,
         memory: str = "full", block_size: int = 128, name: str = "gpt2") -> Layer:
    """GPT-2 over ``vocab_size`` tokens, up to ``n_positions`` long; ``d_model`` wide,
    ``num_heads`` heads, ``num_layers`` blocks, MLP of ``n_inner`` units (default
    ``4 d_model``), LayerNorm ``eps``; ``memory``/``block_size`` choose the attention core
    (:func:`fnnet.MultiHeadAttention`). Init with the id shape: ``model.init(key, (T,))``
    (tables ``N(0, 0.02^2)``). ``fn.models.config_of(model)`` gives its config.
    """
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
    hidden = 4 * d_model if n_inner is None else n_inner
    block = TransformerBlock(d_model, num_heads, causal=True, memory=memory,
                             block_size=block_size, hidden=hidden, eps=eps)
    layers = [pass_mask(Embedding(vocab_size, d_model, table_init=normal(0.02))),
              pass_mask(PositionalEmbedding(n_positions)), *[block] * num_layers,
              pass_mask(LayerNorm(eps)), pass_mask(Unembed(vocab_size), keep=False)]
    return language_model(layers, ModelConfig(
        "gpt2", vocab_size=vocab_size, d_model=d_model, num_heads=num_heads,
        num_layers=num_layers, hidden=hidden, max_positions=n_positions, eps=eps,
        tie_embeddings=tie_embeddings, attention_bias=True, mlp_bias=True))
