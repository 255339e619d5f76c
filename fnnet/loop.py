"""The compiled training loop: epochs inside ONE ``lax.while_loop``, records in one buffer.

The middle floor of :mod:`fnnet.train`: :func:`epoch_fn` runs one epoch of
:func:`fnnet.step.step_fn` (full batch, or a ``lax.scan`` over shuffled
minibatches); :func:`run_loop` runs epochs ``stop.epoch .. end - 1`` and writes each
epoch's record (loss, metrics, validation metrics, learning rate) as one row of a
history buffer, evaluating the stopping rules after every epoch, so a run stops at
exactly the epoch that met them. Everything here is pure and traceable: ``fit``
(:mod:`fnnet.train`) jits :func:`run_loop` with its static :class:`LoopConfig`, and
``sweep`` vmaps :func:`run_epochs` (the loop without validation or stopping rules).

**What is data, what is static.** The number of epochs (``end``), the
hyperparameters of an fnnet optimizer (see :mod:`fnnet.step`), ``tol``, ``patience``,
``min_delta`` and the starting epoch are traced: a new value reuses the compiled
program. The history buffer has a static size, :func:`bucket` of the epochs per call
(the next power of two, at least :data:`MIN_BUFFER`), so a run of a new length
compiles at most once per bucket.

**Randomness.** Epoch ``e`` (counted from 0 over the whole training) uses
``epoch_key(key, e) = jax.random.fold_in(key, e)``: its minibatch permutation and its
dropout keys come from it alone, which is what makes a resumed run equal the
uninterrupted one bit for bit (see :func:`fnnet.fit`).

Minibatches: each epoch draws a fresh permutation and uses ``n // batch_size`` full
batches; the last partial batch (the ``n % batch_size`` examples left over by that
permutation) is DROPPED, so every step has the same shape and nothing recompiles.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .inference import metric_values
from .metrics import metric_name
from .step import learning_rate, step_fn
from .structure import keyed
from .validation import num_examples, take_examples

__all__ = ["epoch_fn", "epoch_key", "run_loop", "run_epochs", "LoopConfig", "Carry", "Stop",
           "Limits", "initial_stop", "stopping_limits", "bucket", "record_names", "MIN_BUFFER",
           "RUNNING", "CONVERGED", "PATIENCE", "NONFINITE"]

# The smallest history buffer (epochs per compiled call are bucketed to powers of 2).
MIN_BUFFER = 16

# Why a run stopped (``Stop.reason``).
RUNNING, CONVERGED, PATIENCE, NONFINITE = 0, 1, 2, 3


# --- one epoch -----------------------------------------------------------------------

def epoch_fn(model, loss, optimizer, x, y, *, batch_size: int | None, method: str,
             batch_sharding=None, regularizer=None, layout=None, dp=None):
    """``epoch((params, opt_state, state), key) -> ((params, opt_state, state), mean_loss)``.

    Full batch: one step on ``(x, y)`` with ``key``. Minibatches: a permutation
    from ``key``, ``n // batch_size`` steps, the remainder dropped. With
    ``batch_sharding`` each minibatch is constrained to it (data parallelism).
    ``state`` is the layer state (``()`` for a stateless model); ``layout`` keeps a
    sharded params/optimizer state in place (:func:`fnnet.step.step_fn`).
    """
    step = step_fn(model, loss, optimizer, method, regularizer, layout, dp)
    n = num_examples(x)

    def full_batch_epoch(carry, k):
        params, opt_state, state = carry
        params, opt_state, state, value = step(params, opt_state, state, x, y, k)
        return (params, opt_state, state), value

    def minibatch_epoch(carry, k):
        k_perm, k_steps = jax.random.split(k)
        nb = n // batch_size
        idx = jax.random.permutation(k_perm, n)[: nb * batch_size].reshape(nb, batch_size)
        step_keys = jax.random.split(k_steps, nb) if model.needs_key or dp is not None else None

        def one_batch(carry, inputs):
            params, opt_state, state = carry
            i, sk = inputs
            xb, yb = take_examples(x, i), y[i]
            if batch_sharding is not None:
                xb, yb = jax.lax.with_sharding_constraint((xb, yb), batch_sharding)
            params, opt_state, state, value = step(params, opt_state, state, xb, yb, sk)
            return (params, opt_state, state), value

        carry, values = jax.lax.scan(one_batch, carry, (idx, step_keys))
        return carry, jnp.mean(values)

    return full_batch_epoch if batch_size is None else minibatch_epoch


def epoch_key(key, e):
    """The key of epoch ``e`` (0-based, counted over the whole training): ``fold_in(key, e)``."""
    return None if key is None else jax.random.fold_in(key, e)


# --- what the loop carries -------------------------------------------------------------

class Stop(NamedTuple):
    """Stopping-rule state carried through the compiled epochs."""

    epoch: jax.Array        # epochs completed, counted over the whole training (int32)
    reason: jax.Array       # RUNNING / CONVERGED / PATIENCE / NONFINITE (int32)
    prev: jax.Array         # previous epoch's training loss (inf before the first)
    best: jax.Array         # best monitored value so far (val_loss, else loss)
    best_epoch: jax.Array   # epoch (1-based) of ``best``
    bad: jax.Array          # epochs since ``best`` improved


def initial_stop(epoch: int = 0) -> Stop:
    """The stopping state of a call that starts after ``epoch`` epochs."""
    i, f = np.int32(0), np.float32(np.inf)      # NumPy scalars: no device dispatch per call
    return Stop(np.int32(epoch), i, f, f, i, i)


class Limits(NamedTuple):
    """The stopping rules' numbers (traced: new values reuse the compiled loop)."""

    tol: Any
    patience: Any
    min_delta: Any


def stopping_limits(tol=None, patience=None, min_delta=0.0) -> Limits:
    """:class:`Limits` as NumPy scalars (``None``: a rule that never fires)."""
    return Limits(np.float32(0.0 if tol is None else tol),
                  np.int32(np.iinfo(np.int32).max if patience is None else patience),
                  np.float32(min_delta))


class Carry(NamedTuple):
    """What one epoch hands to the next."""

    params: Any
    opt_state: Any
    state: Any              # layer state (``()`` for a stateless model)
    stop: Stop
    best: Any               # ``(params, state)`` of the best epoch with restore_best, else ()


class LoopConfig(NamedTuple):
    """The static part of a compiled run (hashable; see the module docstring)."""

    model: Any              # structure.keyed
    loss: Any               # structure.keyed
    optimizer: Any          # the optimizer's kind (step.optimizer_kind), or None
    batch_size: int | None
    method: str
    metrics: tuple          # training metrics besides "loss" (names or keyed functions)
    validation: bool
    rules: bool             # tol / patience evaluated
    debug: bool             # stop at the first non-finite loss
    restore_best: bool
    regularizer: Any        # structure.keyed or None
    batch_sharding: Any
    buffer: int             # rows of the history buffer (>= epochs per call)
    layout: Any = None      # fnnet.sharding.Layout of a sharded (params, opt_state)
    dp: Any = None          # fnnet.dp.DPConfig: the DP-SGD step

    @property
    def watch(self) -> bool:
        """Whether the loop evaluates anything after an epoch (else it only counts)."""
        return self.rules or self.debug or self.restore_best


def bucket(n: int) -> int:
    """The history buffer for ``n`` epochs: the next power of two, at least ``MIN_BUFFER``."""
    return max(MIN_BUFFER, 1 << max(0, (int(n) - 1).bit_length()))


def record_names(cfg: LoopConfig) -> list:
    """The names of the records :func:`run_loop` writes, but ``lr``, in order."""
    names = ["loss"] + [metric_name(getattr(m, "obj", m)) for m in cfg.metrics]
    if cfg.validation:
        names += ["val_loss"] + ["val_" + n for n in names[1:]]
    return names


# --- the loop --------------------------------------------------------------------------

def _recorder(cfg: LoopConfig, optimizer, x, y, val, lr_varies: bool):
    """``record(params, opt_state, state, value) -> {name: scalar}``: one epoch's row."""
    model, loss = cfg.model.obj, cfg.loss.obj
    val_metrics = ("loss",) + cfg.metrics if cfg.validation else ()

    def record(params, opt_state, state, value):
        rec = {"loss": value}
        rec.update(metric_values(model, loss, params, x, y, cfg.metrics, state=state))
        if cfg.validation:
            vals = metric_values(model, loss, params, val[0], val[1], val_metrics, state=state)
            rec.update({"val_" + m: v for m, v in vals.items()})
        if lr_varies:
            rec["lr"] = jnp.asarray(learning_rate(optimizer, opt_state))
        return rec

    return record


def _watch(cfg: LoopConfig, limits: Limits, old: Carry, new: Carry, value, watched, e):
    """``new`` with the stopping rules applied after epoch ``e`` (0-based)."""
    stop = old.stop
    bad_value = ~jnp.isfinite(value)
    params, opt_state, state = new.params, new.opt_state, new.state
    if cfg.debug:  # keep the params that produced the non-finite loss, for find_nonfinite
        params, opt_state, state = jax.tree.map(
            lambda a, b: jnp.where(bad_value, a, b),
            (old.params, old.opt_state, old.state), (params, opt_state, state))
    watched = watched.astype(jnp.float32)
    improved = watched < stop.best - limits.min_delta
    bad = jnp.where(improved, 0, stop.bad + 1)
    converged = jnp.abs(value - stop.prev) < limits.tol
    reason = jnp.select([bad_value & cfg.debug, converged & cfg.rules,
                         (bad >= limits.patience) & cfg.rules],
                        [NONFINITE, CONVERGED, PATIENCE], RUNNING).astype(jnp.int32)
    stop = Stop(stop.epoch, reason, value.astype(jnp.float32),
                jnp.where(improved, watched, stop.best),
                jnp.where(improved, e + 1, stop.best_epoch), bad)
    best = old.best
    if cfg.restore_best:
        best = jax.tree.map(lambda b, n: jnp.where(improved, n, b), best, (params, state))
    return Carry(params, opt_state, state, stop, best)


def run_loop(cfg: LoopConfig, optimizer, carry: Carry, data, end, limits: Limits):
    """Run epochs ``carry.stop.epoch .. end - 1`` (or until a rule fires); pure and traceable.

    ``data`` is ``(x, y, val, key)`` (``val``: ``(x_val, y_val)`` or None; ``key`` may be
    None for a full-batch, key-free model). Returns ``(carry, records)``;
    ``records[name]`` has ``cfg.buffer`` entries, the first ``carry.stop.epoch - start``
    of which are filled (``lr``: every entry, when the learning rate is known).
    """
    x, y, val, key = data
    model, loss = cfg.model.obj, cfg.loss.obj
    reg = None if cfg.regularizer is None else cfg.regularizer.obj
    epoch = epoch_fn(model, loss, optimizer, x, y, batch_size=cfg.batch_size, method=cfg.method,
                     batch_sharding=cfg.batch_sharding, regularizer=reg, layout=cfg.layout,
                     dp=cfg.dp)
    start = carry.stop.epoch

    # The learning rate record: inside the loop only if it changes (a schedule); a constant
    # one is filled in after the loop. Written every epoch, a loop-invariant traced value
    # keeps XLA:CPU from updating the history in place (10,000 XOR epochs 7 ms, not 1.2).
    lr_now = learning_rate(optimizer, carry.opt_state)
    lr_varies = lr_now is not None and _depends_on(
        lambda s: learning_rate(optimizer, s), carry.opt_state)
    record = _recorder(cfg, optimizer, x, y, val, lr_varies)

    def body(c):
        old, bufs, i = c
        e = start + i
        (p, o, s), value = epoch((old.params, old.opt_state, old.state), epoch_key(key, e))
        rec = record(p, o, s, value)
        row = jnp.stack([rec[n].astype(bufs.dtype) for n in names])
        bufs = jax.lax.dynamic_update_index_in_dim(bufs, row, i, 0)
        new = old._replace(params=p, opt_state=o, state=s)
        if cfg.watch:
            new = _watch(cfg, limits, old, new, value,
                         rec["val_loss"] if cfg.validation else value, e)
        return new, bufs, i + 1

    # The loop's only counter ``i`` starts at the constant 0 (not at the traced ``start``,
    # and ``stop.epoch`` is not updated inside): XLA:CPU then updates the history buffer in
    # place (measured: 10,000 XOR epochs 6-10 ms with a traced start or a second counter,
    # 1.2 ms like this).
    count = end - start

    def cond(c):
        going = c[2] < count
        return going & (c[0].stop.reason == RUNNING) if cfg.watch else going

    def one_record():
        value = metric_values(model, loss, carry.params, x, y, ("loss",),
                              state=carry.state)["loss"]
        return record(carry.params, carry.opt_state, carry.state, value)

    shapes = jax.eval_shape(one_record)
    names = tuple(shapes)
    dtype = _history_dtype(jnp.result_type(*[s.dtype for s in shapes.values()]))
    bufs = jnp.full((cfg.buffer, len(names)), jnp.nan, dtype)   # ONE buffer: a row per epoch
    carry, bufs, done = jax.lax.while_loop(cond, body, (carry, bufs, jnp.zeros((), jnp.int32)))
    carry = carry._replace(stop=carry.stop._replace(epoch=start + done))   # see above
    records = {n: bufs[:, j] for j, n in enumerate(names)}
    if lr_now is not None and not lr_varies:
        records["lr"] = jnp.full((cfg.buffer,), lr_now, _history_dtype(jnp.result_type(lr_now)))
    return carry, records


def _depends_on(f, x) -> bool:
    """Whether ``f(x)``'s value depends on ``x`` (traced: on the values of ``x``'s leaves)."""
    from jax.extend.core import Literal

    jaxpr = jax.make_jaxpr(f)(x).jaxpr
    live = set(jaxpr.invars)
    for eqn in jaxpr.eqns:     # (a sub-jaxpr's inputs are among its equation's inputs)
        if any(not isinstance(v, Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(not isinstance(v, Literal) and v in live for v in jaxpr.outvars)


def _history_dtype(dtype):
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


# --- the loop without reporting: sweeps, benchmarks, your own jit/vmap --------------------

def run_epochs(model, loss, optimizer, params, opt_state, x, y, key, *, epochs,
               batch_size: int | None = None, method: str = "manual", batch_sharding=None,
               state=(), regularizer=None, buffer: int | None = None):
    """``epochs`` epochs of training, pure and traceable: ``(params, opt_state, losses)``.

    The loop :func:`fnnet.fit` compiles, without validation, metrics or stopping
    rules, so it can be ``jit``-ed, ``vmap``-ed (``fn.sweep`` vmaps it over runs) or
    ``scan``-ed further. ``key`` may be None for a full-batch, key-free model; epoch
    ``e`` uses ``jax.random.fold_in(key, e)``. ``losses`` holds one mean training loss
    per epoch. ``epochs`` is an int, or a traced int32 scalar when ``buffer`` (a static
    int >= every value of ``epochs``) is given: then ``losses`` has ``buffer`` entries,
    the first ``epochs`` filled (NaN after). With layer ``state`` (not ``()``), returns
    ``(params, opt_state, losses, state)``.
    """
    cfg = LoopConfig(keyed(model), keyed(loss), None, batch_size, method, (), False, False,
                     False, False, None if regularizer is None else keyed(regularizer),
                     batch_sharding, int(epochs) if buffer is None else int(buffer))
    carry = Carry(params, opt_state, state, initial_stop(), ())
    end = jnp.asarray(epochs, jnp.int32)
    carry, records = run_loop(cfg, optimizer, carry, (x, y, None, key), end, stopping_limits())
    losses = records["loss"]
    out = (carry.params, carry.opt_state, losses)
    return out if state == () else out + (carry.state,)

