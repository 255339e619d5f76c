"""``Static``: a pytree node that holds static (hashable, non-array) data and no leaves.

Floor 0 (imports nothing from fnnet): layers put shapes into their residuals with
it, and :mod:`fnnet.optim` keys its recipes with it. Re-exported as ``fn.Static``.
"""

from __future__ import annotations

import jax

__all__ = ["Static"]


@jax.tree_util.register_static
class Static:
    """A residual node holding static (hashable, non-array) data, e.g. a shape.

    It has no array leaves, so residual trees stay valid ``jax.custom_vjp``
    residuals and pass through ``jit`` unchanged::

        return y, Static(x.shape)        # in fwd
        shape = res.value                # in bwd
    """

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return hash(self.value)

    def __eq__(self, other):
        return isinstance(other, Static) and self.value == other.value

    def __repr__(self):
        return f"Static({self.value!r})"
