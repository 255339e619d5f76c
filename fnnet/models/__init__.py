"""Whole models built from fnnet's layers: ``gpt`` (the toy GPT), ``gpt2`` and ``llama``
(real architectures, with their :class:`ModelConfig`)."""

from .config import ModelConfig, config_of
from .gpt import gpt
from .gpt2 import gpt2
from .llama import llama

__all__ = ["gpt", "gpt2", "llama", "ModelConfig", "config_of"]
