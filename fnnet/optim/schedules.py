"""Learning-rate schedules: functions ``step -> lr`` (``step`` an int array, counting from 0).

A schedule goes wherever a learning rate does: ``fn.optim.adam(fn.optim.cosine_decay_schedule(1e-3, 1000))``.
The optimizer evaluates it at its step count ``t = 0, 1, 2, ...`` (the count
before the update), so the first step uses ``schedule(0)``.

=================================================  =====================================================
schedule                                           lr(t)
=================================================  =====================================================
constant_schedule(v)                               v
linear_schedule(v0, v1, T)                         v0 + (v1 - v0) min(t, T) / T   (then flat at v1)
exponential_decay(v0, k, r, staircase=False)       v0 * r ** (t / k)   (``floor(t / k)`` if staircase)
cosine_decay_schedule(v0, T, alpha=0)              v0 * ((1 - alpha) * (1 + cos(pi min(t, T) / T)) / 2 + alpha)
warmup_cosine_decay_schedule(v0, peak, W, T, end)  t < W: v0 + (peak - v0) t / W   (linear warmup)
                                                   t >= W: end + (peak - end) (1 + cos(pi min(t-W, T-W) / (T-W))) / 2
=================================================  =====================================================

In ``warmup_cosine_decay_schedule`` (as in optax) ``T`` counts the warmup too:
the cosine part lasts ``T - W`` steps and ends at ``end_value``.

Every schedule records its constants (see :mod:`fnnet.optim.recipe`), so an
optimizer with a schedule keeps them as data: ``fit`` compiled for
``sgd(linear_schedule(1.0, 0.1, 100))`` reuses its program for other values.
The constants may be traced (validation runs on concrete numbers only).
"""

from __future__ import annotations

import jax.numpy as jnp

from . import _validate
from .recipe import recorded

__all__ = ["constant_schedule", "linear_schedule", "exponential_decay", "cosine_decay_schedule",
           "warmup_cosine_decay_schedule"]


def _float(step, *values):
    """The step as a float in the precision of the schedule's numbers: Python numbers
    give the default float (float64 under x64), float32 hyperparameters (a float32
    model's, inside ``fit``/``train_step``) keep the schedule in float32."""
    return jnp.asarray(step).astype(jnp.result_type(float, *values))


@recorded
def constant_schedule(value: float):
    """``lr(t) = value``."""
    _validate.at_least("constant_schedule", "value", value)

    def schedule(step):
        return jnp.full(jnp.shape(step), value, jnp.result_type(float, value))

    return schedule


@recorded
def linear_schedule(init_value: float, end_value: float, transition_steps: int):
    """``lr(t) = init_value + (end_value - init_value) * min(t, T) / T``, ``T = transition_steps``:
    a straight line from ``init_value`` (step 0) to ``end_value`` (step ``T``), then flat.
    As ``optax.linear_schedule`` (without ``transition_begin``)."""
    where = "linear_schedule"
    _validate.at_least(where, "init_value", init_value)
    _validate.at_least(where, "end_value", end_value)
    _validate.positive(where, "transition_steps", transition_steps)

    def schedule(step):
        frac = jnp.minimum(_float(step, init_value, end_value), transition_steps) / transition_steps
        return init_value + (end_value - init_value) * frac

    return schedule


@recorded
def exponential_decay(init_value: float, transition_steps: int, decay_rate: float,
                      staircase: bool = False):
    """``lr(t) = init_value * decay_rate ** (t / transition_steps)``; with ``staircase``
    the exponent is ``floor(t / transition_steps)``."""
    where = "exponential_decay"
    _validate.at_least(where, "init_value", init_value)
    _validate.positive(where, "transition_steps", transition_steps)
    _validate.positive(where, "decay_rate", decay_rate)

    def schedule(step):
        p = _float(step, init_value, decay_rate) / transition_steps
        if staircase:
            p = jnp.floor(p)
        return init_value * decay_rate ** p

    return schedule


def _cosine(t, steps):
    return 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, steps) / steps))


@recorded
def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0):
    """``lr(t) = init_value * ((1 - alpha) * (1 + cos(pi * min(t, T) / T)) / 2 + alpha)``,
    ``T = decay_steps``: from ``init_value`` down to ``alpha * init_value``, then flat."""
    where = "cosine_decay_schedule"
    _validate.at_least(where, "init_value", init_value)
    _validate.positive(where, "decay_steps", decay_steps)
    _validate.at_least(where, "alpha", alpha)

    def schedule(step):
        return init_value * ((1 - alpha) * _cosine(_float(step, init_value, alpha), decay_steps) + alpha)

    return schedule


@recorded
def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                 decay_steps: int, end_value: float = 0.0):
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then
    cosine decay to ``end_value`` at step ``decay_steps`` (which includes the warmup)."""
    where = "warmup_cosine_decay_schedule"
    for what, v in (("init_value", init_value), ("peak_value", peak_value),
                    ("end_value", end_value), ("warmup_steps", warmup_steps)):
        _validate.at_least(where, what, v)
    _validate.positive(where, "decay_steps", decay_steps)
    concrete = _validate.number(where, "decay_steps", decay_steps) is not None \
        and _validate.number(where, "warmup_steps", warmup_steps) is not None
    if concrete and not decay_steps > warmup_steps:
        raise ValueError(f"{where}: decay_steps must be > warmup_steps (it includes the "
                         f"warmup), got decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}")

    def schedule(step):
        t = _float(step, init_value, peak_value, end_value)
        warm = init_value + (peak_value - init_value) * t / jnp.maximum(warmup_steps, 1)
        cos = end_value + (peak_value - end_value) * _cosine(t - warmup_steps, decay_steps - warmup_steps)
        return jnp.where(t < warmup_steps, warm, cos)

    return schedule
