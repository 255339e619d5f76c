"""Comparing two pytrees leaf for leaf, with a message that names the first difference.

Used by every stateful transform (is the state built for these params?), by
the masks (does the mask have the params' tree?) and by the wrappers. The
check reads tree structures and static shapes only, so it costs nothing under
``jit`` and fires at trace time.
"""

from __future__ import annotations

import jax
import numpy as np

_MAX = 300


def _short(text: str) -> str:
    return text if len(text) <= _MAX else text[:_MAX] + "..."


def describe(tree) -> str:
    """``{'b': (3,), 'w': (2, 3)}``-like summary of a tree's structure and leaf shapes."""
    return _short(str(jax.tree.map(lambda x: tuple(np.shape(x)), tree)))


def mismatch(expected, got) -> str | None:
    """``None`` if the two trees have the same structure and leaf shapes, else a message."""
    exp_paths, exp_def = jax.tree_util.tree_flatten_with_path(expected)
    got_paths, got_def = jax.tree_util.tree_flatten_with_path(got)
    if exp_def != got_def:
        return (f"expected the tree {_short(str(exp_def))}, got {_short(str(got_def))}")
    for (path, e), (_, g) in zip(exp_paths, got_paths):
        if np.shape(e) != np.shape(g):
            return (f"expected shape {tuple(np.shape(e))} at {jax.tree_util.keystr(path) or 'the root'}, "
                    f"got {tuple(np.shape(g))} (expected {describe(expected)}, got {describe(got)})")
    return None


def check_like(where: str, what: str, expected, got, todo: str):
    """``ValueError(f"{where}: {what}: expected ..., got ...; {todo}")`` on any difference."""
    msg = mismatch(expected, got)
    if msg is not None:
        raise ValueError(f"{where}: {what}: {msg}; {todo}")


def check_state(where: str, state, cls, updates, *fields):
    """Raise unless ``state`` is a ``cls`` whose ``fields`` match ``updates`` leaf for leaf."""
    if not isinstance(state, cls):
        raise ValueError(f"{where}: expected a {cls.__name__} in the optimizer state, got "
                         f"{type(state).__name__}; the state comes from another optimizer: call "
                         f"opt.init(params) with this optimizer")
    for field in fields:
        check_like(where, "optimizer state was built for params of a different structure/shape",
                   updates, getattr(state, field), "call opt.init(params) for this model")
    return state
