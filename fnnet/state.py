"""Layer state: values a layer carries from step to step that are not trained.

BatchNorm's running mean and variance are the example. State is a pytree of its
own, threaded explicitly in and out; it never lives in ``params`` (the optimizer
never sees it) and never hides in a closure. Stateless models never see any of
this: their signatures are unchanged.

The contract, in four lines::

    state = init_state(model, params)                     # () for a stateless model
    y, res = model.fwd(params, x, key=k)                  # training: batch statistics, no state
    state = update_state(model, state, res)               # new running statistics, from res
    y = forward(model, params, x, state=state)[0]         # inference (key=None): running statistics

A stateful layer is an ordinary :class:`~fnnet.Layer` whose ``fwd`` also accepts
``state=`` (used in inference only) and whose record carries a :class:`StateRule`
(``named(..., state=StateRule(init, update))``): ``init(params) -> state`` and
``update(state, residuals) -> state``, the latter reading what the training forward computed (the
residuals), so nothing runs twice. Combinators (``serial``, ``parallel``, ...)
that contain a stateful layer are stateful themselves: their state is a tuple
with one entry per child (``()`` for stateless children).

Training functions follow one rule, *state in, state out*: pass ``state=`` and
the new state comes back as the LAST return value (``value_and_grad``,
``train_step``, ``fit``, ``sweep``). Inference functions (``apply``, ``predict``,
``evaluate``) take ``state=`` and return what they always returned.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

from .core import Layer, meta

__all__ = ["StateRule", "with_state", "init_state", "update_state"]


class StateRule(NamedTuple):
    """How a stateful layer starts (``init(params)``) and moves on (``update(state, res)``)."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any], Any]


def with_state(layer: Layer, init: Callable, update: Callable) -> Layer:
    """Mark ``layer`` as stateful with the rule ``(init, update)``; returns ``layer``.
    (A layer built with :func:`fnnet.named` says ``state=StateRule(init, update)``.)"""
    layer.fwd.fnnet_meta = dataclasses.replace(meta(layer), state=StateRule(init, update))
    return layer


def init_state(model: Layer, params):
    """The model's initial state, built from its params; ``()`` for a stateless model.

    A combinator's state is its children's, a tuple with one entry per child (a
    wrapper of one child, e.g. ``residual``, has the child's state itself)."""
    m = meta(model)
    if m.state is not None:
        return m.state.init(params)
    if not model.has_state:
        return ()
    g = m.graph
    states = tuple(init_state(c, p) for c, p in zip(g.children, g.params(params)))
    return states[0] if g.wrapper else states


def update_state(model: Layer, state, residuals):
    """The state after one TRAINING forward whose residuals are ``residuals``.

    Pure and jit-able; returns ``state`` unchanged for a stateless model.
    """
    m = meta(model)
    if m.state is not None:
        return m.state.update(state, residuals)
    if not model.has_state:
        return state
    g = m.graph
    parts = g.residuals(residuals)
    if g.wrapper:
        return update_state(g.children[0], state, parts[0])
    return tuple(update_state(c, s, r) for c, s, r in zip(g.children, state, parts))
