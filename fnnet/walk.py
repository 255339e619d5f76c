"""The one walker: how every tool sees through ``serial``, ``parallel``, ``residual``,
``tie``, ``mixed_precision`` and any other combinator.

A combinator's record (:func:`fnnet.core.meta`) holds a :class:`~fnnet.core.Graph`:
its forward and backward written once over its children, ``run(i, ...)`` and
``back(i, ...)`` standing for child ``i``. The layer's own ``fwd``/``bwd`` pass the
children's; this module passes recording ones, so a walk computes exactly what
``fwd`` and ``bwd`` compute, and every tool sees the same layers in the same order:

=====================  =====================================================================
:func:`record`         the forward as a tape: a tree of :class:`Node` (layer, path,
                       params, input, key, output, residuals, children)
:func:`backward`       the backward over a tape; ``hook(node, dy, inside)`` sees every
                       node and may replace ``inside(dy)`` (the node's own backward: its
                       ``bwd`` for a leaf, the graph's backward over the children else)
:func:`leaves`         the leaf layers with their params and keys, without data
:func:`locate`         the leaf node holding a params path of a recorded node
:func:`input_layers`   the leaf layers that read the model's input itself, with their part
:func:`output_layer`   the layer that produces a model's output
=====================  =====================================================================

A node's ``path`` holds the child positions from the root (``(1, 0)``: child 0 of
the root's child 1). Leaves are the layers without a graph.

Users: :func:`fnnet.summary`, :func:`fnnet.gradient_diagnostics`,
:func:`fnnet.find_nonfinite`, :mod:`fnnet.per_example` (and DP-SGD),
:mod:`fnnet.rules` and the learning-rule part of :func:`fnnet.check_grads`,
:func:`fnnet.init_state`/:func:`fnnet.update_state` (through the same graph).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from .core import Layer, call, layer_keys, meta

__all__ = ["Node", "record", "backward", "leaf_nodes", "nodes", "leaves", "locate", "input_layers",
           "output_layer", "seed"]


@dataclasses.dataclass(eq=False)
class Node:
    """One layer's entry on the tape (a graph's ``res`` holds its children's Nodes where
    its children's residuals go; ``dy``: free for a backward hook to record)."""

    layer: Layer
    path: tuple
    params: Any
    x: Any
    key: Any
    y: Any = None
    res: Any = None
    children: list = dataclasses.field(default_factory=list)
    dy: Any = None

    @property
    def graph(self):
        return meta(self.layer).graph

    @property
    def leaf(self) -> bool:
        return self.graph is None


def _leaf_fwd(layer, params, x, key, state):
    return call(layer, params, x, key, state)


def record(layer: Layer, params, x, *, key=None, state=None, leaf_fwd: Callable = _leaf_fwd,
           path: tuple = ()):
    """``(y, root Node)``: ``layer``'s forward, recorded node by node.

    ``leaf_fwd(layer, params, x, key, state) -> (y, residuals)`` runs each leaf
    (default: its ``fwd``); ``y`` equals ``layer.fwd(params, x, key=key)[0]``.
    """
    node = Node(layer, path, params, x, key)
    graph = meta(layer).graph
    if graph is None:
        y, node.res = leaf_fwd(layer, params, x, key, state)
    else:
        def run(i, p, xi, k, s):
            yi, child = record(graph.children[i], p, xi, key=k, state=s, leaf_fwd=leaf_fwd,
                               path=path + (i,))
            node.children.append(child)
            return yi, child

        y, node.res = graph.forward(params, x, key, state, run)
    node.y = y
    return y, node


def backward(node: Node, dy, hook: Callable | None = None):
    """``(dparams, dx)`` of a recorded node, as its layer's ``bwd`` computes them.

    ``hook(node, dy, inside) -> (dparams, dx)`` is called at every node (children
    inside their parent's call); ``inside(dy)`` runs the node's own backward (the
    leaf's ``bwd``, or the graph's backward over the children, hooked in turn).
    """
    def inside(d):
        graph = meta(node.layer).graph
        if graph is None:
            return node.layer.bwd(node.res, d)
        return graph.backward(node.res, d, lambda i, child, di: backward(child, di, hook))

    return inside(dy) if hook is None else hook(node, dy, inside)


def nodes(node: Node, *, post: bool = False) -> list:
    """Every node below ``node`` depth first in forward order, each before its children
    (or, ``post=True``, after them: the order in which the forward finishes them)."""
    below = [n for c in node.children for n in nodes(c, post=post)]
    return below + [node] if post else [node] + below


def leaf_nodes(node: Node) -> list:
    """The leaf nodes below ``node`` in forward order."""
    return [n for n in nodes(node) if n.leaf]


def seed(loss, out, y):
    """``(value, dout)``: the loss of the output and its cotangent (``loss.bwd`` seeded with 1)."""
    value, lres = loss.fwd(out, y)
    return value, loss.bwd(lres, jnp.ones((), value.dtype))


def _children(layer: Layer, params, key):
    """``[(child, params, key)]`` of a graph, from its record alone (no data)."""
    graph = meta(layer).graph
    kids = graph.children
    parts = graph.params(params)
    if len(parts) != len(kids):
        raise ValueError(f"{layer.name}: params must have one entry per child ({len(kids)}), "
                         f"got {len(parts)}; pass the params from model.init")
    keys = [key] if graph.wrapper else layer_keys(key, len(kids))
    return list(zip(kids, parts, keys))


def leaves(model: Layer, params, key=None, *, open: Callable | None = None, path: tuple = ()):
    """The leaf layers of ``model`` in forward order: ``[(path, layer, params, key)]``.

    Params and keys reach each child as the graph routes them (a tie's targets
    filled in, a mixed-precision model's master params). ``open(layer)`` limits
    which graphs are opened (default: all).
    """
    if meta(model).graph is None or (open is not None and not open(model)):
        return [(path, model, params, key)]
    return [entry for i, (child, p, k) in enumerate(_children(model, params, key))
            for entry in leaves(child, p, k, open=open, path=path + (i,))]


class _Label:
    """An opaque pytree leaf standing for one params leaf (by its key path)."""

    def __init__(self, value):
        self.value = value


def locate(node: Node, path: tuple):
    """``(leaf node, key path inside its params)`` of the params leaf at key path
    ``path`` (``jax.tree_util`` keys) of the recorded ``node``."""
    while not node.leaf:
        labels = jax.tree_util.tree_map_with_path(lambda kp, _: _Label(kp), node.params)
        for child, part in zip(node.children, node.graph.params(labels)):
            found = [kp for kp, lab in jax.tree_util.tree_flatten_with_path(part)[0]
                     if lab.value == tuple(path)]
            if found:
                node, path = child, found[0]
                break
        else:
            raise ValueError(f"{node.layer.name}: no child holds the params leaf "
                             f"{jax.tree_util.keystr(tuple(path))}")
    return node, tuple(path)


def input_layers(model: Layer, x) -> list:
    """``[(layer, x_part)]``: the leaf layers that read (a part of) the input ``x`` itself,
    as each graph routes it (``Graph.reads``); no data is computed."""
    graph = meta(model).graph
    if graph is None:
        return [(model, x)]
    return [entry for i, xi in graph.reads(x) for entry in input_layers(graph.children[i], xi)]


def output_layer(model: Layer) -> Layer:
    """The layer whose output is ``model``'s output: the last layer of a ``serial``,
    the wrapped model of a ``tie``, ... (a graph's ``output`` child, followed down);
    ``model`` itself when its output is combined from several (``residual``)."""
    graph = meta(model).graph
    while graph is not None and graph.output is not None:
        model = graph.children[graph.output]
        graph = meta(model).graph
    return model
