"""Whole models built from fnnet's layers: ``gpt`` (the toy GPT), ``gpt2`` and ``llama``
(real architectures, with their :class:`ModelConfig`)."""

from .config import ModelConfig, config_of
from .gpt import gpt
from .gpt2 import gpt2
from .hf import from_pretrained, save_pretrained
from .llama import llama

__all__ = ["gpt", "gpt2", "llama", "ModelConfig", "config_of", "from_pretrained",
           "save_pretrained"]

from .generate import generate  # noqa: E402  (the function; its module stays fnnet.models.generate)

__all__ += ["generate"]
