"""Whole models built from fnnet's layers: ``gpt``."""

from .gpt import gpt

__all__ = ["gpt"]
