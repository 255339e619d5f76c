"""``llama``: the Llama family's decoder (Llama 2/3, TinyLlama, SmolLM, ... without rope
scaling), with Hugging Face's hyperparameters.

::

    ids (batch, T)  ->  Embedding(V, d)                       model.embed_tokens
                    ->  LlamaBlock x N                        pre-RMSNorm, GQA + RoPE, SwiGLU
                    ->  RMSNorm(eps)                          model.norm
                    ->  Unembed(V)                            lm_head (tied to the embedding
                                                              with tie_embeddings=True)

Params::

    ({"table": (V, d)},                                                  embed_tokens
     (({"scale": (d,)},                                                  input_layernorm
       {"w_q": (d, H dh), "w_k": (d, KV dh), "w_v": (d, KV dh), "w_o": (H dh, d)}),
      ({"scale": (d,)},                                                  post_attention_layernorm
       {"w_gate": (d, hidden), "w_up": (d, hidden), "w_down": (hidden, d)})),   x N
     {"scale": (d,)},                                                    norm
     {"table": (V, d)} or {"table": None} when tied)                     lm_head.weight verbatim

Hugging Face's Linear weights are ``(out, in)``: ``w_q = q_proj.weight.T`` and so on;
``lm_head.weight`` is ``(V, d)``, Unembed's table as it is. With ``attention_bias`` the
attention has ``b_q, b_k, b_v, b_o``; with ``mlp_bias`` SwiGLU has ``b_gate, b_up, b_down``.

Input: ids ``(batch, T)`` or ``(ids, mask)`` with a padding mask (see
:func:`fnnet.models.gpt2`). Output: logits ``(batch, T, V)``. ``max_len`` is recorded
(``max_position_embeddings``) but does not limit ``T``: rotary positions have no table.
"""

from __future__ import annotations

from ..blocks import LlamaBlock, pass_mask
from ..core import Layer
from ..initializers import normal
from ..layers import Embedding, RMSNorm, Unembed
from .config import ModelConfig, language_model


def llama(vocab_size: int, d_model: int, num_heads: int, num_layers: int, hidden: int, *,
          num_kv_heads: int | None = None, head_dim: int | None = None,
          rope_theta: float = 10000.0, eps: float = 1e-6, tie_embeddings: bool = False,
          max_len: int = 2048, attention_bias: bool = False, mlp_bias: bool = False,
          memory: str = "full", block_size: int = 128, init_std: float = 0.02) -> Layer:
    """A Llama decoder over ``vocab_size`` tokens: ``d_model`` wide, ``num_heads`` query
    heads sharing ``num_kv_heads`` key/value heads (default: as many), ``head_dim``
    (default ``d_model / num_heads``), ``num_layers`` blocks with SwiGLU MLPs of
    ``hidden`` units, RMSNorm ``eps``, rotary base ``rope_theta``.

    ``memory``/``block_size`` choose the attention core (:func:`fnnet.GroupedQueryAttention`).
    Every kernel and table starts at ``N(0, init_std^2)`` (Hugging Face's
    ``initializer_range``), RMSNorm scales at 1. Init with the id shape:
    ``model.init(key, (T,))``. ``fn.models.config_of(model)`` gives its config.
    """
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"llama: num_layers must be a positive int, got {num_layers!r}")
    for what, v in (("vocab_size", vocab_size), ("max_len", max_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"llama: {what} must be a positive int, got {v!r}")
    w = normal(init_std)
    block = LlamaBlock(d_model, num_heads, hidden, num_kv_heads=num_kv_heads, head_dim=head_dim,
                       rope_theta=rope_theta, eps=eps, attention_bias=attention_bias,
                       mlp_bias=mlp_bias, memory=memory, block_size=block_size, w_init=w)
    layers = [pass_mask(Embedding(vocab_size, d_model, table_init=w)), *[block] * num_layers,
              pass_mask(RMSNorm(eps)), pass_mask(Unembed(vocab_size, table_init=w), keep=False)]
    return language_model(layers, ModelConfig(
        "llama", vocab_size=vocab_size, d_model=d_model, num_heads=num_heads,
        num_layers=num_layers, hidden=hidden, max_positions=max_len, eps=eps,
        num_kv_heads=num_kv_heads, head_dim=head_dim, rope_theta=float(rope_theta),
        tie_embeddings=tie_embeddings, attention_bias=attention_bias, mlp_bias=mlp_bias))
