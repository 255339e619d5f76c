"""A function under a readable name (``fnnet_name``), identified by (name, function).

Used for hand-made losses (:func:`fnnet.losses.named_loss`) and metrics
(:func:`fnnet.metrics.named_metric`): it is its constructor call
(:class:`~fnnet.structure.Recorded`), so two wrappers of the same function under
the same name are equal and ``jit`` caches keyed on them are reused. The wrapped
function is not modified.
"""

from __future__ import annotations

from typing import Callable

from .structure import Recorded


class NamedFunction(Recorded):
    """``f`` called ``name``: ``NamedFunction(name, f)(*args) == f(*args)``."""

    def __init__(self, name: str, f: Callable):
        self.fnnet_name, self.f = name, f
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *args):
        return self.f(*args)

    def __repr__(self):
        return f"<{self.fnnet_name}>"
