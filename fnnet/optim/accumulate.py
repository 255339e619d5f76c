"""Gradient accumulation: one real step every ``k`` calls, on the mean of ``k`` gradients.

::

    opt = fn.optim.accumulate(fn.optim.adam(1e-3), k=4)   # batch 16 behaves like batch 64

Call ``t = 1, 2, ...`` adds its gradient to a running sum. On every ``k``-th call
the inner optimizer runs once on the MEAN of the last ``k`` gradients and its
update is returned; on the other calls the update is zero (the params do not
move) and the inner state does not change, so its step count (and a learning
rate schedule) counts real steps only. As ``optax.MultiSteps``.

State: ``AccumulateState(count, grads, inner_state)``: ``count`` (int32) is the
number of gradients in the running sum ``grads`` (kept in at least float32).
``k`` must be an int >= 1 (``k=1`` is the inner optimizer itself).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _validate
from .base import Optimizer, check_optimizer, recorded
from ._trees import check_state
from .transforms import _zeros

__all__ = ["AccumulateState", "accumulate"]


class AccumulateState(NamedTuple):
    """Gradients summed since the last real step (``count`` of them) and the inner state."""

    count: jax.Array
    grads: object
    inner_state: object


@recorded
def accumulate(inner: Optimizer, k: int) -> Optimizer:
    """Run ``inner`` every ``k``-th call on the mean of the last ``k`` gradients."""
    check_optimizer(inner, "accumulate")
    _validate.count("accumulate", "k", k)

    def init(params):
        return AccumulateState(jnp.zeros((), jnp.int32), _zeros(params), inner.init(params))

    def update(updates, state, params=None):
        check_state("accumulate", state, AccumulateState, updates, "grads")
        total = jax.tree.map(lambda a, u: a + u.astype(a.dtype), state.grads, updates)
        count = state.count + 1

        def step(_):
            mean = jax.tree.map(lambda a, u: (a / k).astype(u.dtype), total, updates)
            out, inner_state = inner.update(mean, state.inner_state, params)
            out = jax.tree.map(lambda o, u: o.astype(u.dtype), out, updates)
            return out, AccumulateState(jnp.zeros_like(count), jax.tree.map(jnp.zeros_like, total),
                                        inner_state)

        def wait(_):
            return jax.tree.map(jnp.zeros_like, updates), AccumulateState(count, total, state.inner_state)

        return jax.lax.cond(count >= k, step, wait, None)

    return Optimizer(init, update)
