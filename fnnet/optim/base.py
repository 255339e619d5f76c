"""The optimizer contract (optax's): ``Optimizer(init, update)``.

::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # params optional for most
    params = apply_updates(params, updates)              # params + updates, leafwise

Updates are what gets ADDED to the params (so SGD's update is ``-lr * g``).
Optimizers are built from tiny transforms composed with :func:`chain`; every
state is a NamedTuple, and the step count lives in the state as an int32 array.
Any object with the same two functions (an optax optimizer, for instance) can be
used wherever fnnet takes an optimizer.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

from . import _validate

Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = Union[float, Schedule]


class Optimizer(NamedTuple):
    """``init(params) -> state``; ``update(updates, state, params=None) -> (updates, state)``."""

    init: Callable[[Any], Any]
    update: Callable[..., Any]


GradientTransformation = Optimizer  # optax's name for the same contract


class EmptyState(NamedTuple):
    """State of a stateless transform."""


class ScaleByScheduleState(NamedTuple):
    """Step count (int32 array) used to evaluate a learning-rate schedule."""

    count: jax.Array


def apply_updates(params, updates):
    """``params + updates`` leaf by leaf, keeping each param's dtype."""
    return jax.tree.map(lambda p, u: (p + u).astype(jnp.result_type(p)), params, updates)


def check_learning_rate(name: str, learning_rate: ScalarOrSchedule):
    """Raise ``ValueError`` for a negative constant learning rate (traced values pass)."""
    _validate.learning_rate(name, learning_rate)


def scale(factor: float) -> Optimizer:
    """``u <- factor * u``."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: factor * u, updates), state

    return Optimizer(init, update)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> Optimizer:
    """``u <- -lr_t * u`` where ``lr_t = learning_rate(t)`` for a schedule, counting ``t`` from 0.

    The step count ``t`` lives in :class:`ScaleByScheduleState`. With
    ``flip_sign=False`` the sign is kept (``u <- lr_t * u``).
    """
    check_learning_rate("scale_by_learning_rate", learning_rate)
    sign = -1.0 if flip_sign else 1.0

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        updates = jax.tree.map(lambda u: (sign * lr * u).astype(u.dtype), updates)
        return updates, ScaleByScheduleState(count=state.count + 1)

    return Optimizer(init, update)


def chain(*transforms: Optimizer) -> Optimizer:
    """Apply ``transforms`` in sequence; the state is a tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if not isinstance(state, (tuple, list)) or len(state) != len(transforms):
            got = f"{len(state)} entries" if isinstance(state, (tuple, list)) else type(state).__name__
            raise ValueError(f"chain: the state must be a tuple of {len(transforms)} entries (one "
                             f"per transform), got {got}; pass the state from this optimizer's "
                             f"init")
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return Optimizer(init, update)
