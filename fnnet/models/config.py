"""The architecture record a model builder attaches to the model it returns.

``fn.models.gpt2``, ``fn.models.gpt`` and ``fn.models.llama`` (and
``fn.models.from_pretrained``) record what they built as a :class:`ModelConfig`;
``config_of(model)`` reads it back (``None`` for any other layer). It is what
``save_pretrained`` writes as ``config.json`` and what ``generate`` reads to size its
key/value cache. The fields are the architecture's, in fnnet's names; the Hugging
Face names are in :mod:`fnnet.models.hf`:

=================  ==========================  ==================================
field              GPT-2 (``config.json``)     Llama (``config.json``)
=================  ==========================  ==================================
vocab_size         vocab_size                  vocab_size
d_model            n_embd                      hidden_size
num_heads          n_head                      num_attention_heads
num_kv_heads       (= num_heads)               num_key_value_heads
head_dim           (= d_model / num_heads)     head_dim
num_layers         n_layer                     num_hidden_layers
hidden             n_inner (None: 4 d_model)   intermediate_size
max_positions      n_positions                 max_position_embeddings
eps                layer_norm_epsilon          rms_norm_eps
rope_theta         (None)                      rope_theta / rope_parameters
tie_embeddings     tie_word_embeddings         tie_word_embeddings
attention_bias     (True)                      attention_bias
mlp_bias           (True)                      mlp_bias
=================  ==========================  ==================================

The record is the ``config`` field of the model's layer record
(:func:`fnnet.core.meta`); it is plain data and never enters the computation. ``extra`` keeps the
other entries of a loaded ``config.json`` (token ids, ``initializer_range``...) so
that ``save_pretrained`` writes them back; it takes no part in equality.
"""

from __future__ import annotations

import dataclasses

from ..combinators import serial
from ..core import Layer, meta
from ..tie import tie

__all__ = ["ModelConfig", "config_of", "attach_config"]

MODEL_TYPES = ("gpt2", "llama")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only language model's architecture (see the module docstring)."""

    model_type: str
    vocab_size: int
    d_model: int
    num_heads: int
    num_layers: int
    hidden: int
    max_positions: int
    eps: float
    num_kv_heads: int | None = None
    head_dim: int | None = None
    rope_theta: float | None = None
    tie_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    extra: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"ModelConfig: model_type must be one of {MODEL_TYPES}, "
                             f"got {self.model_type!r}")
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.d_model // self.num_heads)


def config_of(model: Layer) -> ModelConfig | None:
    """The :class:`ModelConfig` a builder attached to ``model``, or None."""
    return meta(model).config if isinstance(model, Layer) else None


def attach_config(model: Layer, config: ModelConfig) -> Layer:
    """Record ``config`` on ``model`` (returns ``model``)."""
    model.fwd.fnnet_meta = dataclasses.replace(meta(model), config=config)
    return model


def language_model(layers, config: ModelConfig) -> Layer:
    """``serial(*layers)`` with the output head's table tied to the embedding's (first and
    last layers) when ``config.tie_embeddings``, and ``config`` attached."""
    net = serial(*layers)
    if config.tie_embeddings:
        net = tie(net, (0, "table"), (len(layers) - 1, "table"))
    return attach_config(net, config)
