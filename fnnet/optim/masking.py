"""Masks: a transform on some leaves only (weight decay on kernels), frozen parameters.

A mask is a pytree with EXACTLY the params' tree structure and one bool per
leaf (``True``: the leaf takes part), or a function ``params -> mask``::

    fn.optim.adamw(1e-3, weight_decay=1e-2, mask=fn.optim.kernel_mask)   # no decay on b, scale
    fn.optim.chain(fn.optim.masked(fn.optim.add_decayed_weights(1e-4), fn.optim.kernel_mask),
                   fn.optim.sgd(0.1))                                    # L2 on kernels only
    fn.optim.chain(fn.optim.adam(1e-3), fn.optim.freeze(mask))           # mask: True = frozen

``masked(inner, mask)`` runs ``inner`` on the masked leaves only (its state
exists only for them: the other leaves are replaced by an empty
:class:`MaskedNode`) and passes the other updates through unchanged, as
``optax.masked`` does. ``freeze(mask)`` sets the updates of the masked leaves
to zero; put it LAST in a chain, so that nothing after it (weight decay,
momentum) moves a frozen leaf. A function mask is called on the params in
``init`` and on the params (or, without params, the updates: same tree) in
``update``. A mask whose tree differs from the params' is a ``ValueError``
naming both trees; a mask leaf that is not a concrete bool is a ``TypeError``.
Masks are part of the optimizer's kind (static): pass the same function object
(``fn.optim.kernel_mask``) or an equal tree of bools to reuse a compiled run.

:func:`kernel_mask` marks the leaves whose name (last dict key) is ``"w"``,
starts with ``"w_"`` or is ``"table"``: the kernels of Dense, Conv*, the
recurrent layers and attention, and Embedding tables. Biases (``b``, ``b_*``)
and norm parameters (``scale``, ``bias``) are left out.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from ._trees import check_state
from .base import Optimizer, check_optimizer, recorded
from .transforms import set_to_zero

__all__ = ["MaskedNode", "MaskedState", "masked", "freeze", "kernel_mask"]


class MaskedNode(NamedTuple):
    """Stands for a leaf the mask leaves out: a pytree node with no leaves."""


class MaskedState(NamedTuple):
    """The inner transform's state, built for the masked leaves only."""

    inner_state: object


def _bool(where, leaf):
    if isinstance(leaf, (bool, np.bool_)):
        return bool(leaf)
    if isinstance(leaf, (np.ndarray, jax.Array)) and not isinstance(leaf, jax.core.Tracer) \
            and leaf.shape == () and leaf.dtype == bool:
        return bool(leaf)
    raise TypeError(f"{where}: every mask leaf must be a concrete bool (True: the leaf takes "
                    f"part), got {leaf!r}; build the mask with jax.tree.map(lambda p: ..., params)")


def _flat_mask(where, mask, tree):
    """The mask as one Python bool per leaf of ``tree`` (checked), and ``tree``'s treedef."""
    m = mask(tree) if callable(mask) else mask
    leaves, treedef = jax.tree.flatten(tree)
    m_leaves, m_def = jax.tree.flatten(m)
    if m_def != treedef:
        raise ValueError(f"{where}: the mask must have the params' tree structure, one bool per "
                         f"leaf: expected {treedef}, got {m_def}")
    return leaves, treedef, [_bool(where, b) for b in m_leaves]


def _hide(leaves, treedef, keep):
    return treedef.unflatten([x if k else MaskedNode() for x, k in zip(leaves, keep)])


@recorded
def masked(inner: Optimizer, mask, *, where: str = "masked") -> Optimizer:
    """Apply ``inner`` to the leaves where ``mask`` is True; other updates pass unchanged."""
    check_optimizer(inner, where)
    if not callable(mask):
        jax.tree.map(lambda b: _bool(where, b), mask)

    def init(params):
        leaves, treedef, keep = _flat_mask(where, mask, params)
        return MaskedState(inner.init(_hide(leaves, treedef, keep)))

    def update(updates, state, params=None):
        check_state(where, state, MaskedState, updates)
        u_leaves, treedef, keep = _flat_mask(where, mask, updates if params is None else params)
        if params is not None:
            u_leaves, u_def = jax.tree.flatten(updates)
            if u_def != treedef:
                raise ValueError(f"{where}: updates and params differ: expected the tree "
                                 f"{treedef}, got {u_def}")
            params = _hide(jax.tree.leaves(params), treedef, keep)
        out, inner_state = inner.update(_hide(u_leaves, treedef, keep), state.inner_state, params)
        out_leaves = treedef.flatten_up_to(out)
        merged = [o if k else u for u, o, k in zip(u_leaves, out_leaves, keep)]
        return treedef.unflatten(merged), MaskedState(inner_state)

    return Optimizer(init, update)


@recorded
def freeze(mask) -> Optimizer:
    """Zero updates on the leaves where ``mask`` is True (frozen parameters).

    Put it last: ``chain(adam(1e-3), freeze(mask))``.
    """
    return masked(set_to_zero(), mask, where="freeze")


def kernel_mask(params):
    """True for leaves named ``"w"``, ``"w_*"`` or ``"table"`` (kernels and embedding
    tables), False for every other leaf. ``ValueError`` if no leaf is a kernel."""

    def is_kernel(path, _):
        last = path[-1] if path else None
        name = getattr(last, "key", getattr(last, "name", None))
        return isinstance(name, str) and (name in ("w", "table") or name.startswith("w_"))

    mask = jax.tree_util.tree_map_with_path(is_kernel, params)
    if not any(jax.tree.leaves(mask)):
        raise ValueError("kernel_mask: no leaf of params is named 'w', 'w_*' or 'table'; build "
                         "the mask yourself, e.g. jax.tree.map(lambda p: p.ndim >= 2, params)")
    return mask
