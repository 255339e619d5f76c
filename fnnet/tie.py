"""Tied weights: one parameter used in several places.

``tie(model, source, *targets)`` returns a model whose params hold the ``source``
leaf once: each ``target`` leaf is ``None`` in the params tree (an empty pytree
node, so optimizers, checkpoints and ``jax.tree`` functions never see it), and
the forward fills it in with the source's value. A path is a tuple of keys into
the params tree: tuple positions and dict keys, e.g. ``(0, "table")`` for the
table of the first layer of a ``serial``.

The gradient of a parameter used in ``k`` places is the sum of its ``k`` gradients
(the multivariable chain rule), which is exactly the backward::

    p_target := p_source                              (forward, for every target)
    dp_source := dp_source + sum_targets dp_target    (backward)
    dp_target := None

Example: a language model whose input embedding is reused as its output
projection (``Unembed`` computes ``h @ table.T`` with the same ``(V, d)`` layout
as ``Embedding``)::

    lm = fn.tie(fn.serial(fn.Embedding(V, d), fn.LSTM(d), fn.Unembed(V)),
                (0, "table"), (2, "table"))
    params = lm.init(key, (T,))          # params[2] == {"table": None}

The tie is declared by paths, in plain data: no objects with identity
semantics, and the tied params stay a plain pytree. Source and targets must have
the same shape and dtype (``init`` checks).
"""

from __future__ import annotations

import jax.numpy as jnp

from .core import Graph, Layer, combinator, meta
from .structure import recorded

__all__ = ["tie"]


def _fmt(path) -> str:
    return "".join(f"[{k!r}]" for k in path)


def _get(tree, path, where):
    node = tree
    for i, k in enumerate(path):
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{where}: params have no entry {_fmt(path[:i + 1])} (path "
                             f"{_fmt(path)}); paths are tuples of tuple positions and dict "
                             f"keys, e.g. (0, 'table')") from None
    return node


def _set(tree, path, value):
    if not path:
        return value
    k = path[0]
    if isinstance(tree, dict):
        return {**tree, k: _set(tree[k], path[1:], value)}
    items = list(tree)
    items[k] = _set(items[k], path[1:], value)
    return tuple(items) if isinstance(tree, tuple) else items


def _as_path(where, p):
    if isinstance(p, (str, int)):
        p = (p,)
    if not isinstance(p, (tuple, list)) or not p or not all(
            isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool) and k >= 0)
            for k in p):
        raise ValueError(f"{where}: a path must be a non-empty tuple of tuple positions (>= 0) "
                         f"and dict keys, e.g. (0, 'table'); got {p!r}")
    return tuple(p)


@recorded
def tie(model: Layer, source, *targets) -> Layer:
    """Share the params leaf at ``source`` with every path in ``targets``.

    Returns a :class:`~fnnet.Layer` with the params of ``model`` minus the
    targets (``None`` there); gradients of the targets are added to the source's.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"tie: model is {model!r}, not a fnnet Layer")
    if not targets:
        raise ValueError("tie: give at least one target path to share the source with")
    source = _as_path("tie", source)
    targets = tuple(_as_path("tie", t) for t in targets)
    if source in targets or len(set(targets)) != len(targets):
        raise ValueError(f"tie: source {_fmt(source)} and targets "
                         f"{[_fmt(t) for t in targets]} must all be different paths")
    name = f"tie({model.name}, {_fmt(source)} -> {', '.join(map(_fmt, targets))})"

    def fill(params):
        p = _get(params, source, name)
        for t in targets:
            if _get(params, t, name) is not None:
                raise ValueError(f"{name}: params at the tied path {_fmt(t)} must be None (the "
                                 f"source {_fmt(source)} is used there); use the params from "
                                 f"this model's init")
            params = _set(params, t, p)
        return params

    def init(key, input_shape):
        params = model.init(key, input_shape)
        src = _get(params, source, name)
        for t in targets:
            tgt = _get(params, t, name)
            if jnp.shape(tgt) != jnp.shape(src) or jnp.result_type(tgt) != jnp.result_type(src):
                raise ValueError(
                    f"{name}: the target {_fmt(t)} has shape {jnp.shape(tgt)} and dtype "
                    f"{jnp.result_type(tgt)} but the source {_fmt(source)} has shape "
                    f"{jnp.shape(src)} and dtype {jnp.result_type(src)}; tied parameters must "
                    f"match exactly (for an output projection use Unembed, whose table has "
                    f"Embedding's (num, features) layout)")
            params = _set(params, t, None)
        return params

    def forward(params, x, key, state, run):
        return run(0, fill(params), x, key, state)

    def backward(res, dy, back):
        dparams, dx = back(0, res, dy)
        total = _get(dparams, source, name)
        for t in targets:
            total = total + _get(dparams, t, name)
            dparams = _set(dparams, t, None)
        return _set(dparams, source, total), dx

    graph = Graph("tie", (model,), forward, backward, params=lambda p: (fill(p),),
                  residuals=lambda r: (r,), wrapper=True, output=0, additive=False,
                  shares=(source, targets))
    return combinator(name, init, graph, input_dtype=meta(model).input_dtype)
