"""``summary(model, input_shape)``: a table of the layers, their output shapes and params.

Each row is one layer: its name, its output shape for ONE example (no batch
axis), its parameter shapes and count, and its state (BatchNorm's running
statistics). Combinators (``serial``, ``parallel``, ``residual``, ``tie``,
``mixed_precision``: every graph :mod:`fnnet.walk` opens) get a row with the
totals of everything inside, and their children are indented below them. Shapes
are inferred abstractly (``jax.eval_shape`` of one recorded forward): nothing is
computed, no params are initialised for real.

The result prints as a text table (``print(fn.summary(net, (784,)))``) and
renders as an HTML table in a notebook; its rows are plain data::

    s = fn.summary(net, (784,))
    s.total_params, s.rows[0].output_shape, s.as_dict()

Tied params (:func:`fnnet.tie`) are counted once, where they are stored.
"""

from __future__ import annotations

import dataclasses
import html
import math

import jax

from .core import Layer
from .shapes import abstract_batch, check_shape_tree, shape_tree
from .state import init_state
from .walk import record

__all__ = ["summary", "Summary", "SummaryRow"]


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    depth: int
    name: str
    output_shape: tuple
    param_shapes: dict        # "path" -> shape, for a leaf layer's own params
    num_params: int           # this layer's params, children included
    state_shapes: dict        # "path" -> shape, for a stateful leaf layer
    num_state: int


@dataclasses.dataclass(frozen=True)
class Summary:
    title: str
    input_shape: tuple
    rows: tuple

    @property
    def total_params(self) -> int:
        return self.rows[0].num_params

    @property
    def total_state(self) -> int:
        return self.rows[0].num_state

    def as_dict(self) -> dict:
        return {"title": self.title, "input_shape": self.input_shape,
                "total_params": self.total_params, "total_state": self.total_state,
                "rows": [dataclasses.asdict(r) for r in self.rows]}

    def _table(self):
        head = ("layer", "output shape", "params", "#params", "state")
        body = []
        for r in self.rows:
            params = ", ".join(f"{k} {_shape(v)}" for k, v in r.param_shapes.items())
            state = ", ".join(f"{k} {_shape(v)}" for k, v in r.state_shapes.items())
            body.append(("  " * r.depth + r.name, _shape(r.output_shape), params,
                         f"{r.num_params:,}", state))
        return head, body

    def __str__(self) -> str:
        head, body = self._table()
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
        fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        rule = "-" * len(fmt(tuple("-" * w for w in widths)))
        return "\n".join([f"summary: {self.title}", f"input shape (one example): "
                          f"{_shape(self.input_shape)}", fmt(head), rule, *map(fmt, body), rule,
                          f"total params: {self.total_params:,}    "
                          f"state entries: {self.total_state:,}"])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head, body = self._table()
        cell = lambda tag, c, i: (f"<{tag} style='text-align:left;font-family:monospace;"
                                  f"padding-left:{1.2 * len(c) - 1.2 * len(c.lstrip()) if i == 0 else 0.4}em'>"
                                  f"{html.escape(c.strip())}</{tag}>")
        rows = "".join("<tr>" + "".join(cell("td", c, i) for i, c in enumerate(r)) + "</tr>"
                       for r in body)
        return (f"<p><b>{html.escape(self.title)}</b>, input {_shape(self.input_shape)}: "
                f"{self.total_params:,} params, {self.total_state:,} state entries</p><table>"
                f"<tr>{''.join(cell('th', h, 1) for h in head)}</tr>{rows}</table>")


def _shape(s) -> str:
    if isinstance(s, tuple) and s and all(isinstance(e, tuple) for e in s):
        return "(" + ", ".join(_shape(e) for e in s) + ")"
    return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"


def _leaves(tree) -> dict:
    """``{"w": (5, 8), ...}``: each leaf's path (bare keys for a flat dict) and shape."""
    out = {}
    for path, a in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = jax.tree_util.keystr(path)
        out[key[2:-2] if len(path) == 1 and key.startswith("['") else key] = tuple(a.shape)
    return out


def _count(tree) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def summary(model: Layer, input_shape) -> Summary:
    """The layer table of ``model`` for one example of ``input_shape`` (see module doc)."""
    if not isinstance(model, Layer):
        raise TypeError(f"summary: model is {model!r}, not a fnnet Layer")
    check_shape_tree("summary", input_shape)
    params = jax.eval_shape(lambda k: model.init(k, input_shape), jax.random.key(0))
    rows = []

    def add(node, depth):
        kids, leaf = node.children, node.leaf
        if len(kids) == 1 and kids[0].layer.name == node.layer.name:
            return add(kids[0], depth)     # a wrapper under its child's name: one row
        state = init_state(node.layer, node.params)
        rows.append(SummaryRow(depth, node.layer.name if leaf else node.graph.kind,
                               shape_tree(node.y), _leaves(node.params) if leaf else {},
                               _count(node.params), _leaves(state) if leaf else {},
                               _count(state)))
        for child in kids:
            add(child, depth + 1)

    def trace(params, x):   # the tape of one abstract training forward (fnnet.walk)
        add(record(model, params, x, key=jax.random.key(0))[1], 0)

    jax.eval_shape(trace, params, abstract_batch(input_shape, model.input_dtype))
    return Summary(model.name, tuple(input_shape), tuple(rows))


def _summary_method(self, input_shape):
    """The table of :func:`fnnet.summary`: ``net.summary((784,))``."""
    return summary(self, input_shape)


Layer.summary = _summary_method   # installed here: core, a floor below, never imports summary
