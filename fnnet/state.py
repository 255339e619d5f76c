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
``state=`` (used in inference only) and which carries a :class:`StateRule`
attached by :func:`with_state`: ``init(params) -> state`` and ``update(state,
residuals) -> state``, the latter reading what the training forward computed (the
residuals), so nothing runs twice. Combinators (``serial``, ``parallel``, ...)
that contain a stateful layer are stateful themselves: their state is a tuple
with one entry per child (``()`` for stateless children).

Training functions follow one rule, *state in, state out*: pass ``state=`` and
the new state comes back as the LAST return value (``value_and_grad``,
``train_step``, ``fit``, ``sweep``). Inference functions (``apply``, ``predict``,
``evaluate``) take ``state=`` and return what they always returned.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .core import Layer

__all__ = ["StateRule", "with_state", "init_state", "update_state", "children_state_rule"]


class StateRule(NamedTuple):
    """How a stateful layer starts (``init(params)``) and moves on (``update(state, res)``)."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any], Any]


def with_state(layer: Layer, init: Callable, update: Callable) -> Layer:
    """Mark ``layer`` as stateful with the rule ``(init, update)``; returns ``layer``."""
    layer.fwd.fnnet_state = StateRule(init, update)
    return layer


def init_state(model: Layer, params):
    """The model's initial state, built from its params; ``()`` for a stateless model."""
    rule = getattr(model.fwd, "fnnet_state", None)
    return () if rule is None else rule.init(params)


def update_state(model: Layer, state, residuals):
    """The state after one TRAINING forward whose residuals are ``residuals``.

    Pure and jit-able; returns ``state`` unchanged for a stateless model.
    """
    rule = getattr(model.fwd, "fnnet_state", None)
    return state if rule is None else rule.update(state, residuals)


def children_state_rule(layers, split_params, split_residuals) -> StateRule:
    """The rule of a combinator whose state is a tuple, one entry per child.

    ``split_params(params)`` and ``split_residuals(res)`` give the children's
    params and residuals in order.
    """

    def init(params):
        return tuple(init_state(l, p) for l, p in zip(layers, split_params(params)))

    def update(state, res):
        return tuple(update_state(l, s, r)
                     for l, s, r in zip(layers, state, split_residuals(res)))

    return StateRule(init, update)
