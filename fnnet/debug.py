"""Finding NaNs: ``find_nonfinite`` walks the manual path layer by layer.

It runs exactly what ``value_and_grad(method="manual")`` runs, eagerly and one
layer at a time, on :mod:`fnnet.walk`'s tape (every combinator opened): each
layer's forward, the loss forward and backward, then each layer's backward in
reverse. After every piece it checks the result for NaN/inf and reports the
FIRST non-finite one::

    report = fn.find_nonfinite(net, loss, params, x, y)
    report.ok          # True when everything is finite
    print(report)      # e.g. "forward output of layer 2 (Log) [path 2] is non-finite: 3 of 12 values (inf)"

The key (if any) is split per layer exactly as the model splits it, so a
model with Dropout sees the same masks as in training.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .core import Layer, Loss
from .walk import backward, nodes, record

__all__ = ["NonfiniteReport", "find_nonfinite"]


class NonfiniteReport(NamedTuple):
    """Where the first non-finite value appeared (``ok`` when there was none).

    ``stage``: ``"input"``, ``"forward"``, ``"loss"``, ``"loss backward"`` or
    ``"backward"``; ``position``: the layer's index path inside the model (``(2,)``,
    or ``(1, 0)`` for layer 0 of a nested serial at position 1); ``layer``: its
    name; ``what``: ``"output"``, ``"dx"`` or ``"dparams<path>"``.
    """

    ok: bool
    stage: str = ""
    position: tuple = ()
    layer: str = ""
    what: str = ""
    detail: str = ""

    def __str__(self) -> str:
        if self.ok:
            return "find_nonfinite: all forward outputs, the loss and all gradients are finite"
        where = f" of layer {self.position[-1]} ({self.layer}) [path {'/'.join(map(str, self.position))}]" \
            if self.position else (f" ({self.layer})" if self.layer else "")
        return f"find_nonfinite: {self.stage} {self.what}{where} is non-finite: {self.detail}"


def _bad(tree):
    """``(path, description)`` of the first leaf with a NaN/inf, else None."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.asarray(leaf)
        if not np.issubdtype(a.dtype, np.inexact):
            continue
        finite = np.isfinite(a)
        if not finite.all():
            kinds = [name for name, m in (("nan", np.isnan(a)), ("inf", np.isinf(a))) if m.any()]
            return jax.tree_util.keystr(path), f"{a.size - finite.sum()} of {a.size} values ({', '.join(kinds)})"
    return None


class _Found(Exception):
    def __init__(self, report):
        self.report = report


def find_nonfinite(model: Layer, loss: Loss, params, x, y, *, key=None) -> NonfiniteReport:
    """Run the manual path layer by layer; report the first non-finite value.

    Checks, in order: the input ``x``; each layer's forward output (leaves and the
    combinators around them, as each finishes); the loss value; the loss's
    ``dlogits``; then walking backward, each layer's ``dparams`` and ``dx``. No
    autodiff runs (rule 3). Works on any model: every combinator is opened
    (:mod:`fnnet.walk`).
    """
    bad = _bad(x)
    if bad:
        return NonfiniteReport(False, "input", (), "", "x", bad[1])
    _, root = record(model, params, x, key=key)
    for node in nodes(root, post=True):   # in the order the forward finishes them
        bad = _bad(node.y)
        if bad:
            return NonfiniteReport(False, "forward", node.path, node.layer.name, "output", bad[1])
    value, lres = loss.fwd(root.y, y)
    bad = _bad(value)
    if bad:
        return NonfiniteReport(False, "loss", (), loss.name, "value", bad[1])
    dy = loss.bwd(lres, jnp.ones((), value.dtype))
    bad = _bad(dy)
    if bad:
        return NonfiniteReport(False, "loss backward", (), loss.name, "dlogits", bad[1])

    def hook(node, dy, inside):
        dparams, dx = inside(dy)
        for what, tree in (("dparams", dparams), ("dx", dx)):
            bad = _bad(tree)
            if bad:
                raise _Found(NonfiniteReport(False, "backward", node.path, node.layer.name,
                                             what + (bad[0] if what == "dparams" else ""),
                                             bad[1]))
        return dparams, dx

    try:
        backward(root, dy, hook)
    except _Found as found:
        return found.report
    return NonfiniteReport(True)
