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

Hyperparameters are data. Every fnnet factory records the call that built its
optimizer (factory and arguments) on the optimizer's ``update`` function
(``update.fnnet_recipe``; a NamedTuple takes no attributes). Read it with
:func:`~fnnet.optim.hparams_of`; :func:`split_hparams` splits an optimizer into
a hashable ``static`` part (the kind of optimizer, its structural settings,
which numbers are zero) and the list of its numeric hyperparameters, and
:func:`merge_hparams` rebuilds it, with traced numbers inside ``jit``: a
training loop compiled for ``adam(1e-3)`` runs ``adam(3e-3)`` without
recompiling. Schedules record themselves the same way, so their constants are
data too. Factories therefore accept traced hyperparameters (validation runs
on concrete Python numbers only). See :mod:`fnnet.optim.recipe`.

:func:`check_optimizer` turns an optimizer passed uncalled (``fn.optim.sgd``)
into a clear ``TypeError``; :func:`current_learning_rate` reads the learning
rate of the next step from an optimizer and its state (for logs).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

from . import _validate
from ._trees import check_state
from ..static import Static
# split_hparams / merge_hparams / hparams_of are re-exported here for the training loop.
from .recipe import Recipe, hparams_of, merge_hparams, rebuild, recipe_of, recorded, split_hparams

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


def _wide(u):
    """``u`` in at least float32 (float16/bfloat16 updates are computed in float32)."""
    return u.astype(jnp.promote_types(u.dtype, jnp.float32))


def apply_updates(params, updates):
    """``params + updates`` leaf by leaf, keeping each param's dtype."""
    return jax.tree.map(lambda p, u: (p + u).astype(jnp.result_type(p)), params, updates)


def check_learning_rate(name: str, learning_rate: ScalarOrSchedule):
    """Raise ``ValueError`` for a negative constant learning rate (traced values pass)."""
    _validate.learning_rate(name, learning_rate)


def check_optimizer(opt, where: str = "optimizer"):
    """Return ``opt`` if it has optax's ``init``/``update``; else a ``TypeError`` that says
    what to do (an fnnet factory passed uncalled: ``fn.optim.sgd`` instead of
    ``fn.optim.sgd(0.1)``)."""
    if callable(getattr(opt, "init", None)) and callable(getattr(opt, "update", None)):
        return opt
    name = getattr(opt, "__name__", None)
    if getattr(opt, "fnnet_factory", False):
        raise TypeError(f"{where}: got the optimizer constructor fn.optim.{name} itself, not an "
                        f"optimizer; call it with its hyperparameters, e.g. "
                        f"fn.optim.{name}(learning_rate)")
    if callable(opt):
        raise TypeError(f"{where}: optimizer must be an object with init and update (fnnet's or "
                        f"optax's contract, e.g. fn.optim.sgd(0.1)), got the function "
                        f"{name or opt!r}; if it builds an optimizer, call it")
    raise TypeError(f"{where}: optimizer must be an object with init and update (fnnet's or "
                    f"optax's contract, e.g. fn.optim.sgd(0.1)), got {type(opt).__name__} {opt!r:.80}")


def _find_learning_rate(recipe):
    """The first ``learning_rate`` argument in a (nested) recipe, depth first."""
    for name, value in recipe.hparams.items():
        if name == "learning_rate":
            return value
    for value in jax.tree.leaves(recipe.hparams, is_leaf=lambda v: isinstance(v, Recipe)):
        if isinstance(value, Recipe):
            found = _find_learning_rate(value)
            if found is not None:
                return found
    return None


def current_learning_rate(opt, opt_state):
    """The learning rate ``opt``'s NEXT update uses, as an array, or ``None`` if unknown.

    Works for fnnet optimizers (wrappers included): the first ``learning_rate``
    among the recorded hyperparameters, evaluated at the step count of the first
    :class:`ScaleByScheduleState` in ``opt_state`` if it is a schedule. Traceable.
    """
    recipe = recipe_of(opt)
    lr = None if recipe is None else _find_learning_rate(recipe)
    if lr is None:
        return None
    lr = rebuild(lr) if isinstance(lr, Recipe) else lr.value if isinstance(lr, Static) else lr
    if not callable(lr):
        return jnp.asarray(lr)
    counts = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, ScaleByScheduleState))
              if isinstance(s, ScaleByScheduleState)]
    return None if not counts else jnp.asarray(lr(counts[0].count))


@recorded
def scale(factor: float) -> Optimizer:
    """``u <- factor * u``."""
    _validate.number("scale", "factor", factor)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: (factor * u).astype(u.dtype), updates), state

    return Optimizer(init, update)


@recorded
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
        check_state("scale_by_learning_rate", state, ScaleByScheduleState, updates)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        updates = jax.tree.map(lambda u: (sign * lr * _wide(u)).astype(u.dtype), updates)
        return updates, ScaleByScheduleState(count=state.count + 1)

    return Optimizer(init, update)


@recorded
def chain(*transforms: Optimizer) -> Optimizer:
    """Apply ``transforms`` in sequence; the state is a tuple of their states."""
    for i, t in enumerate(transforms):
        check_optimizer(t, f"chain: transform {i}")

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
