"""A function under a readable name (``fnnet_name``), compared by (name, function).

Used for hand-made losses (:func:`fnnet.losses.named_loss`) and metrics
(:func:`fnnet.metrics.named_metric`): two wrappers of the same function under
the same name are equal, so ``jit`` caches keyed on them are reused. The wrapped
function is not modified.
"""

from __future__ import annotations

from typing import Callable


class NamedFunction:
    """``f`` called ``name``: ``NamedFunction(name, f)(*args) == f(*args)``."""

    def __init__(self, name: str, f: Callable):
        self.fnnet_name, self.f = name, f
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *args):
        return self.f(*args)

    def __eq__(self, other):
        return type(other) is type(self) and (other.fnnet_name, other.f) == (self.fnnet_name, self.f)

    def __hash__(self):
        return hash((self.fnnet_name, self.f))

    def __repr__(self):
        return f"<{self.fnnet_name}>"
