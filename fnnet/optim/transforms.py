"""Building blocks: small ``(init, update)`` transforms that :func:`chain` composes.

Each transform maps the incoming updates ``u`` (the gradients, at the start of
a chain) to new updates; its state is a NamedTuple. The named optimizers
(:func:`~fnnet.optim.sgd`, :func:`~fnnet.optim.adam`, ...) are chains of these::

    adamw(lr, wd) == chain(scale_by_adam(b1, b2, eps),
                           add_decayed_weights(wd),
                           scale_by_learning_rate(lr))

===========================  ===============================================  ======================
transform                    update (leafwise, t counts steps from 1)          state
===========================  ===============================================  ======================
trace(mu, nesterov)          b_t = mu b_{t-1} + u_t  (b_0 = 0, so b_1 = u_1)   TraceState(trace)
                             out: b_t, or u_t + mu b_t if nesterov
scale_by_adam(b1, b2, eps)   m_t = b1 m + (1-b1) u;  v_t = b2 v + (1-b2) u^2   ScaleByAdamState(count,
                             out: (m_t/(1-b1^t)) / (sqrt(v_t/(1-b2^t)) + eps)  mu, nu)
scale_by_rms(decay, eps)     v_t = decay v + (1-decay) u^2                      ScaleByRmsState(nu)
                             out: u / (sqrt(v_t) + eps)                          (+ mu if centered)
  centered=True              g_t = decay g + (1-decay) u;
                             out: u / (sqrt(v_t - g_t^2) + eps)
scale_by_rss(init, eps)      s_t = s_{t-1} + u^2  (s_0 = init)                  ScaleByRssState(sum_of_squares)
                             out: u / (sqrt(s_t) + eps)
add_decayed_weights(wd)      out: u + wd * w  (needs params)                   EmptyState
clip_by_global_norm(c)       out: u * min(1, c / ||u||), ||u|| over all leaves EmptyState
set_to_zero()                out: 0                                            EmptyState
===========================  ===============================================  ======================

``eps`` is added OUTSIDE the square root everywhere, as in PyTorch, and must be
> 0 (an exactly-zero gradient would otherwise give ``0 / 0``).

Precision: states (moments, traces, sums of squares) are kept in at least
float32, whatever the params' dtype, and the arithmetic runs in that precision;
each update is cast back to the dtype of the incoming update. Adam on float16
params therefore neither underflows ``v`` (``g^2`` of a float16 gradient is
often below float16's smallest number) nor returns ``-inf``.

Every stateful transform checks that its state belongs to these params: same
tree structure and same shapes as the updates (a static check, free under
``jit``); a state built for another model is an error, never broadcast.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _trees, _validate
from ._trees import check_state
from .base import EmptyState, Optimizer, _wide, recorded

__all__ = [
    "TraceState", "ScaleByAdamState", "ScaleByRmsState", "ScaleByRssState",
    "trace", "scale_by_adam", "scale_by_rms", "scale_by_rss", "add_decayed_weights",
    "clip_by_global_norm", "global_norm", "set_to_zero",
]


def _state_dtype(dtype):
    """At least float32: float16/bfloat16 params get float32 moments."""
    return jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(dtype, jnp.inexact) else dtype


def _zeros(params):
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _state_dtype(jnp.result_type(p))), params)


class TraceState(NamedTuple):
    """Momentum buffer ``b``, shaped like the params."""

    trace: object


@recorded
def trace(decay: float, nesterov: bool = False, *, where: str = "trace") -> Optimizer:
    """Momentum as in ``torch.optim.SGD`` (dampening 0)::

        b_t = decay * b_{t-1} + u_t          (b_0 = 0, hence b_1 = u_1 as in PyTorch)
        out = b_t                    if not nesterov
        out = u_t + decay * b_t      if nesterov
    """
    _validate.at_least(where, "momentum", decay)

    def init(params):
        return TraceState(_zeros(params))

    def update(updates, state, params=None):
        del params
        check_state(where, state, TraceState, updates, "trace")
        b = jax.tree.map(lambda u, b: decay * b + u.astype(b.dtype), updates, state.trace)
        if nesterov:
            out = jax.tree.map(lambda u, b: (u.astype(b.dtype) + decay * b).astype(u.dtype), updates, b)
        else:
            out = jax.tree.map(lambda u, b: b.astype(u.dtype), updates, b)
        return out, TraceState(b)

    return Optimizer(init, update)


class ScaleByAdamState(NamedTuple):
    """Adam's step count (int32), first moment ``mu`` and second moment ``nu``."""

    count: jax.Array
    mu: object
    nu: object


def _one_minus_power(beta, t):
    """``1 - beta**t`` as ``-expm1(t log beta)``: accurate in float32 even for
    ``beta`` close to 1 (``1 - 0.999`` in float32 alone is off by 6e-5 relative).
    ``log beta`` is taken in float64 when ``beta`` is a Python number."""
    if isinstance(beta, (int, float)) and beta > 0:
        log_beta = math.log(beta)
    else:       # traced: in t's dtype (a float32 model's is float32 under x64 too)
        log_beta = jnp.log(jnp.asarray(beta).astype(jnp.result_type(t)))
    return -jnp.expm1(t * log_beta)


@recorded
def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *,
                  where: str = "scale_by_adam") -> Optimizer:
    """Adam's direction with bias correction counting ``t`` from 1::

        m_t = b1 m_{t-1} + (1 - b1) u_t,     v_t = b2 v_{t-1} + (1 - b2) u_t^2
        out = (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)
    """
    _validate.unit_interval(where, "b1", b1)
    _validate.unit_interval(where, "b2", b2)
    _validate.eps(where, eps)

    def init(params):
        return ScaleByAdamState(jnp.zeros((), jnp.int32), _zeros(params), _zeros(params))

    def update(updates, state, params=None):
        del params
        check_state(where, state, ScaleByAdamState, updates, "mu", "nu")
        t = state.count + 1
        mu = jax.tree.map(lambda u, m: b1 * m + (1 - b1) * u.astype(m.dtype), updates, state.mu)
        nu = jax.tree.map(lambda u, v: b2 * v + (1 - b2) * jnp.square(u.astype(v.dtype)),
                          updates, state.nu)

        def direction(u, m, v):
            # the bias correction in the moments' dtype (float32 for a float32 model, also
            # under x64: a float64 step count would make the update's rounding differ)
            tf = t.astype(m.dtype)
            c1, c2 = _one_minus_power(b1, tf), _one_minus_power(b2, tf)
            return ((m / c1) / (jnp.sqrt(v / c2) + eps)).astype(u.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(t, mu, nu)

    return Optimizer(init, update)


class ScaleByRmsState(NamedTuple):
    """RMSprop's mean square ``nu`` and (centered only) mean gradient ``mu``."""

    nu: object
    mu: object


@recorded
def scale_by_rms(decay: float = 0.99, eps: float = 1e-8, centered: bool = False, *,
                 where: str = "scale_by_rms") -> Optimizer:
    """RMSprop's direction as in ``torch.optim.RMSprop`` (``decay`` is torch's ``alpha``)::

        v_t = decay v_{t-1} + (1 - decay) u_t^2                 (v_0 = 0)
        out = u_t / (sqrt(v_t) + eps)
        centered:  g_t = decay g_{t-1} + (1 - decay) u_t;   out = u_t / (sqrt(v_t - g_t^2) + eps)
    """
    _validate.unit_interval(where, "decay", decay)
    _validate.eps(where, eps)

    def init(params):
        return ScaleByRmsState(_zeros(params), _zeros(params) if centered else ())

    def update(updates, state, params=None):
        del params
        check_state(where, state, ScaleByRmsState, updates, *(("nu", "mu") if centered else ("nu",)))
        nu = jax.tree.map(lambda u, v: decay * v + (1 - decay) * jnp.square(u.astype(v.dtype)),
                          updates, state.nu)
        if centered:
            mu = jax.tree.map(lambda u, g: decay * g + (1 - decay) * u.astype(g.dtype), updates,
                              state.mu)
            var = jax.tree.map(lambda v, g: v - g * g, nu, mu)
        else:
            mu, var = (), nu
        out = jax.tree.map(lambda u, v: (u.astype(v.dtype) / (jnp.sqrt(v) + eps)).astype(u.dtype),
                           updates, var)
        return out, ScaleByRmsState(nu, mu)

    return Optimizer(init, update)


class ScaleByRssState(NamedTuple):
    """Adagrad's running sum of squared gradients."""

    sum_of_squares: object


@recorded
def scale_by_rss(initial_accumulator_value: float = 0.0, eps: float = 1e-10, *,
                 where: str = "scale_by_rss") -> Optimizer:
    """Adagrad's direction as in ``torch.optim.Adagrad``::

        s_t = s_{t-1} + u_t^2      (s_0 = initial_accumulator_value)
        out = u_t / (sqrt(s_t) + eps)
    """
    _validate.at_least(where, "initial_accumulator_value", initial_accumulator_value)
    _validate.eps(where, eps)

    def init(params):
        return ScaleByRssState(jax.tree.map(lambda z: z + initial_accumulator_value, _zeros(params)))

    def update(updates, state, params=None):
        del params
        check_state(where, state, ScaleByRssState, updates, "sum_of_squares")
        s = jax.tree.map(lambda u, s: s + jnp.square(u.astype(s.dtype)), updates, state.sum_of_squares)
        out = jax.tree.map(lambda u, s: (u.astype(s.dtype) / (jnp.sqrt(s) + eps)).astype(u.dtype),
                           updates, s)
        return out, ScaleByRssState(s)

    return Optimizer(init, update)


@recorded
def add_decayed_weights(weight_decay: float, *, where: str = "add_decayed_weights") -> Optimizer:
    """``out = u + weight_decay * w``. Needs ``params`` in ``update``.

    Before the scaling by the learning rate this is PyTorch's coupled L2 penalty
    (``g + wd w``); after an adaptive transform (AdamW) it is decoupled decay.
    """
    _validate.at_least(where, "weight_decay", weight_decay)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(f"{where}: weight decay needs the params; call "
                             f"update(grads, state, params)")
        _trees.check_like(where, "params and updates differ", updates, params,
                          "pass the params these updates are for")
        out = jax.tree.map(lambda u, w: (_wide(u) + weight_decay * _wide(w)).astype(u.dtype),
                           updates, params)
        return out, state

    return Optimizer(init, update)


def global_norm(tree) -> jax.Array:
    """``sqrt(sum of squares of every leaf)``."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(_wide(x))) for x in leaves)) if leaves else jnp.zeros(())


@recorded
def clip_by_global_norm(max_norm: float) -> Optimizer:
    """Rescale all updates together so their global norm is at most ``max_norm``::

        n = sqrt(sum_leaves sum(u^2));    out = u            if n <= max_norm
                                          out = u * max_norm / n  otherwise
    """
    _validate.positive("clip_by_global_norm", "max_norm", max_norm)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        del params
        n = global_norm(updates)
        factor = jnp.where(n > max_norm, max_norm / jnp.where(n > 0, n, 1.0), 1.0)
        return jax.tree.map(lambda u: (_wide(u) * factor).astype(u.dtype), updates), state

    return Optimizer(init, update)


@recorded
def set_to_zero() -> Optimizer:
    """``out = 0`` (same shapes and dtypes): a parameter that never moves. See
    :func:`~fnnet.optim.freeze` to apply it to some leaves only."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(jnp.zeros_like, updates), state

    return Optimizer(init, update)
