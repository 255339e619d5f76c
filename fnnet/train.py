"""Compiled training: ``train_step`` (one jitted step) and ``fit`` (whole runs compiled).

``train_step`` returns a function running ONE compiled program doing forward,
backward and optimizer update; it traces once per input shape/dtype and is
reused.

``fit`` runs the epochs inside compiled code: a ``lax.while_loop`` over epochs
(and a ``lax.scan`` over minibatches within an epoch) that writes each epoch's
record (loss, metrics, learning rate) into a history buffer. Quiet runs are ONE
device call (10,000 XOR epochs in about a millisecond); with a progress bar
(``verbose``) or a log file (``log=``) the run is cut into chunks of epochs and
the host reports between chunks. The stopping rules are evaluated inside the
compiled loop after every epoch, so a run stops at exactly the epoch that met
them.

**What compiles, and when.** The compiled run is cached on the model's and the
loss's *structure* (:mod:`fnnet.structure`: ``serial(Dense(3), Relu)`` built
twice is the same model), the optimizer's KIND, ``batch_size``, ``method``, the
metric names, which options are on (validation, stopping rules, debug,
``restore_best``, a regularizer), and the shapes and dtypes of the data.
Everything else is data of the compiled program: the number of epochs, the
learning rate and every other hyperparameter of an fnnet optimizer (a fresh
``fn.optim.adam(3e-3)`` reuses the program of ``adam(1e-3)``), ``tol``,
``patience``, ``min_delta`` and the starting epoch. The history buffer has a
bucketed static size (the next power of two of the epochs per call, at least
16), so a run of a new length compiles at most once per bucket. An optimizer
that is not fnnet's (optax) is compared structurally as a whole: equal
hyperparameters reuse, new ones recompile.

**Randomness and exact resume.** Epoch ``e`` (counted from 0 over the whole
training, across calls) uses the key ``jax.random.fold_in(key, e)``: its
minibatch permutation and its dropout keys come from it alone. A run split into
several calls therefore equals the uninterrupted run bit for bit: pass the SAME
``key``, the params, optimizer state and layer state returned by the previous
call (or loaded from a checkpoint), and ``initial_epoch=`` the number of epochs
already done (``history["epoch"][-1]``); ``epochs`` stays the total, as in
Keras::

    p, s, h = fn.fit(net, loss, opt, p0, x, y, epochs=10, key=key)            # epochs 1-10
    fn.save("ckpt.npz", {"params": p, "opt_state": s})
    c = fn.load("ckpt.npz", like={"params": p, "opt_state": s})
    p, s, h = fn.fit(net, loss, opt, c["params"], x, y, opt_state=c["opt_state"],
                     epochs=30, initial_epoch=10, key=key)                      # epochs 11-30

The stopping rules (``tol``, ``patience``) start afresh in every call.

Minibatches (``batch_size`` set): each epoch draws a fresh permutation from its
key and uses ``n // batch_size`` full batches; the last partial batch (the
``n % batch_size`` examples left over by that permutation) is DROPPED, so every
step has the same shape and nothing recompiles. Different examples are dropped
in different epochs.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import data_checks, runlog
from . import sharding as _sharding
from .core import Layer, Loss, forward
from .grad import check_method, require_key, value_and_grad
from .metrics import check_metrics, metric_values
from .optim.base import apply_updates
from .optim.recipe import hparams_for
from .structure import keyed

__all__ = ["train_step", "fit", "run_epochs", "epoch_fn", "validate_fit_args"]

# The smallest history buffer (epochs per compiled call are bucketed to powers of 2).
MIN_BUFFER = 16


# --- optimizers: kind (static) and hyperparameters (data) ------------------------------

def _optimizer_parts(optimizer):
    """``(static, hparams)``: what selects the compiled program, and its traced data.

    fnnet optimizers carry their factory and hyperparameters (see
    :mod:`fnnet.optim.base`); those are split so that new hyperparameter values
    reuse the compiled program. Any other optimizer is one static object.
    """
    from .optim import base

    split = getattr(base, "split_hparams", None)
    if split is not None:
        parts = split(optimizer)
        if parts is not None:
            return keyed(parts[0]), parts[1]
    return keyed(optimizer), None


def _build_optimizer(static, hparams):
    if hparams is None:
        return static.obj
    from .optim import base

    return base.merge_hparams(static.obj, hparams)


def _learning_rate(optimizer, opt_state):
    """The learning rate the optimizer's NEXT step uses, or None if unknown (traceable)."""
    from .optim import base

    lr = getattr(base, "current_learning_rate", None)
    if lr is None:
        return None
    try:
        return lr(optimizer, opt_state)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


# --- one step ------------------------------------------------------------------------

def _stateful(model) -> bool:
    return bool(getattr(model, "has_state", False))


def _step_fn(model: Layer, loss: Loss, optimizer, method: str, regularizer=None, layout=None,
             dp=None):
    """``step(params, opt_state, state, x, y, key) -> (params, opt_state, state, value)``.

    ``layout`` (:class:`fnnet.sharding.Layout`): keep gradients, params and optimizer
    state in the shardings of the params and state (e.g. FSDP's): each device updates
    only its own shard. ``dp`` (a :class:`fnnet.dp.DPConfig`): the DP-SGD step instead
    (:func:`fnnet.dp.fit_step`)."""
    if dp is not None:
        from .dp import fit_step

        return fit_step(model, loss, optimizer, dp)
    kwargs = {} if regularizer is None else {"regularizer": regularizer}
    vg = value_and_grad(model, loss, method=method, **kwargs)
    stateful = _stateful(model)

    def step(params, opt_state, state, x, y, key):
        if stateful:
            value, grads, state = vg(params, x, y, key=key, state=state)
        else:
            value, grads = vg(params, x, y, key=key)
        if layout is not None:
            grads = layout.constrain("params", grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = apply_updates(params, updates)
        if layout is not None:
            params = layout.constrain("params", params)
            opt_state = layout.constrain("opt_state", opt_state)
        return params, opt_state, state, value

    return step


class _StepConfig(NamedTuple):
    model: Any
    loss: Any
    optimizer: Any
    method: str
    regularizer: Any
    layout: Any = None          # fnnet.sharding.Layout of a sharded (params, opt_state)


@partial(jax.jit, static_argnames=("cfg",))
def _compiled_step(params, opt_state, state, x, y, key, hparams, *, cfg):
    opt = _build_optimizer(cfg.optimizer, hparams)
    reg = None if cfg.regularizer is None else cfg.regularizer.obj
    step = _step_fn(cfg.model.obj, cfg.loss.obj, opt, cfg.method, reg, cfg.layout)
    return step(params, opt_state, state, x, y, key)


def train_step(model: Layer, loss: Loss, optimizer, *, method: str = "manual", mesh=None,
               regularizer=None, sharding=None):
    """Return ``step(params, opt_state, x, y, *, key=None, state=None)``.

    ``step`` returns ``(params, opt_state, loss)``, or ``(params, opt_state,
    loss, state)`` when ``state=`` is given (a model with layer state, e.g.
    BatchNorm, requires it). One compiled program: ``value_and_grad`` (manual
    by default), then ``optimizer.update`` and ``apply_updates``. ``loss`` is
    the value BEFORE the update. A model containing a random layer requires
    ``key``. ``optimizer`` is anything with optax's ``init``/``update``
    contract. The program is shared by every equal model, loss and optimizer
    kind (see :mod:`fnnet.train`): ``train_step`` built again, or with a new
    learning rate, does not recompile.

    ``regularizer``: e.g. ``fn.l2(1e-4)``, added to the loss (and its
    hand-written gradient to the gradients).

    ``mesh`` (a ``jax.sharding.Mesh``): data parallelism. The batch is split
    over the mesh's devices and the params/state replicated (see
    :mod:`fnnet.sharding`); the batch size must be a multiple of ``mesh.size``.
    ``sharding`` (with ``mesh``): where params and optimizer state live:
    ``"replicated"`` (default), ``"fsdp"``, ``"tensor"`` or a policy object of
    :mod:`fnnet.sharding`; the returned params and state stay placed so.
    """
    check_method(method)
    check_optimizer_object(optimizer, "train_step")
    static, hparams = _optimizer_parts(optimizer)
    cfg = _StepConfig(keyed(model), keyed(loss), static, method,
                      None if regularizer is None else keyed(regularizer))
    stateful = _stateful(model)
    policy = _sharding.check_policy(mesh, sharding, "train_step")

    def arguments(params, opt_state, x, y, key, state):
        """The compiled step's arguments, placed on the mesh (if any), and its config."""
        hp, c = hparams_for(hparams, params), cfg
        if mesh is not None:
            params, opt_state, layout = _sharding.place(mesh, policy, params, opt_state)
            key, state, hp = _sharding.replicate(mesh, (key, state, hp))
            x, y = _sharding.shard_batch(mesh, (x, y), "train_step", policy)
            c = cfg._replace(layout=layout)
        return (params, opt_state, state if stateful else (), x, y, key, hp), c

    def step(params, opt_state, x, y, *, key=None, state=None):
        require_key(model, key, "train_step")
        check_state_arg(model, state, "train_step")
        check_data(x, y, "train_step")
        args, c = arguments(params, opt_state, x, y, key, state)
        params, opt_state, new_state, value = _compiled_step(*args, cfg=c)
        return (params, opt_state, value, new_state) if stateful else (params, opt_state, value)

    def lower(params, opt_state, x, y, *, key=None, state=None):
        """``jax.jit``'s ``lower`` of the compiled step at these arguments (for inspection;
        placed on the mesh as ``step`` places them)."""
        args, c = arguments(params, opt_state, x, y, key, state)
        return _compiled_step.lower(*args, cfg=c)

    step.lower = lower
    return step


# --- one epoch -----------------------------------------------------------------------

def epoch_fn(model, loss, optimizer, x, y, *, batch_size: int | None, method: str,
             batch_sharding=None, regularizer=None, layout=None, dp=None):
    """``epoch((params, opt_state, state), key) -> ((params, opt_state, state), mean_loss)``.

    Full batch: one step on ``(x, y)`` with ``key``. Minibatches: a permutation
    from ``key``, ``n // batch_size`` steps, the remainder dropped. With
    ``batch_sharding`` each minibatch is constrained to it (data parallelism).
    ``state`` is the layer state (``()`` for a stateless model).
    """
    step = _step_fn(model, loss, optimizer, method, regularizer, layout, dp)
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


# --- the compiled loop -----------------------------------------------------------------

RUNNING, CONVERGED, PATIENCE, NONFINITE = 0, 1, 2, 3


class _Stop(NamedTuple):
    """Stopping-rule state carried through the compiled epochs."""

    epoch: jax.Array        # epochs completed, counted over the whole training (int32)
    reason: jax.Array       # RUNNING / CONVERGED / PATIENCE / NONFINITE (int32)
    prev: jax.Array         # previous epoch's training loss (inf before the first)
    best: jax.Array         # best monitored value so far (val_loss, else loss)
    best_epoch: jax.Array   # epoch (1-based) of ``best``
    bad: jax.Array          # epochs since ``best`` improved


def _initial_stop(epoch: int = 0):
    i, f = np.int32(0), np.float32(np.inf)      # NumPy scalars: no device dispatch per call
    return _Stop(np.int32(epoch), i, f, f, i, i)


class _LoopConfig(NamedTuple):
    """The static part of a compiled run (hashable; see the module docstring)."""

    model: Any
    loss: Any
    optimizer: Any
    batch_size: int | None
    method: str
    metrics: tuple          # training metrics besides "loss"
    validation: bool
    rules: bool             # tol / patience evaluated
    debug: bool
    restore_best: bool
    regularizer: Any
    batch_sharding: Any
    buffer: int
    layout: Any = None      # fnnet.sharding.Layout of a sharded (params, opt_state)
    dp: Any = None          # fnnet.dp.DPConfig: the DP-SGD step


def _loop(cfg: _LoopConfig, params, opt_state, state, stop, best, x, y, val, key, hparams, end,
          limits, optimizer=None):
    """Run epochs ``stop.epoch .. end - 1`` (or until a rule fires); pure and traceable.

    Returns ``((params, opt_state, state, stop, best), records)``; ``records[name]``
    has ``cfg.buffer`` entries, the first ``stop.epoch - start`` of which are filled.
    """
    model, loss = cfg.model.obj, cfg.loss.obj
    if optimizer is None:
        optimizer = _build_optimizer(cfg.optimizer, hparams)
    reg = None if cfg.regularizer is None else cfg.regularizer.obj
    epoch = epoch_fn(model, loss, optimizer, x, y, batch_size=cfg.batch_size, method=cfg.method,
                     batch_sharding=cfg.batch_sharding, regularizer=reg, layout=cfg.layout,
                     dp=cfg.dp)
    val_metrics = ("loss",) + cfg.metrics if cfg.validation else ()
    watch = cfg.rules or cfg.debug or cfg.restore_best
    start = stop.epoch

    def record(new_p, new_o, new_s, value):
        rec = {"loss": value}
        rec.update(metric_values(model, loss, new_p, x, y, cfg.metrics, state=new_s))
        if cfg.validation:
            vals = metric_values(model, loss, new_p, val[0], val[1], val_metrics, state=new_s)
            rec.update({"val_" + m: v for m, v in vals.items()})
        if lr_varies:
            rec["lr"] = jnp.asarray(_learning_rate(optimizer, new_o))
        return rec

    def body(c):
        (params, opt_state, state, stop, best), bufs, i = c
        e = start + i
        (new_p, new_o, new_s), value = epoch((params, opt_state, state), epoch_key(key, e))
        rec = record(new_p, new_o, new_s, value)
        row = jnp.stack([rec[n].astype(bufs.dtype) for n in names])
        bufs = jax.lax.dynamic_update_index_in_dim(bufs, row, i, 0)
        if not watch:
            return (new_p, new_o, new_s, stop, best), bufs, i + 1
        bad_value = ~jnp.isfinite(value)
        if cfg.debug:  # keep the params that produced the non-finite loss, for find_nonfinite
            new_p, new_o, new_s = jax.tree.map(lambda a, b: jnp.where(bad_value, a, b),
                                               (params, opt_state, state), (new_p, new_o, new_s))
        watched = (rec["val_loss"] if cfg.validation else value).astype(jnp.float32)
        improved = watched < stop.best - limits["min_delta"]
        bad = jnp.where(improved, 0, stop.bad + 1)
        converged = jnp.abs(value - stop.prev) < limits["tol"]
        reason = jnp.select([bad_value & cfg.debug, converged & cfg.rules,
                             (bad >= limits["patience"]) & cfg.rules],
                            [NONFINITE, CONVERGED, PATIENCE], RUNNING).astype(jnp.int32)
        stop = _Stop(stop.epoch, reason, value.astype(jnp.float32),
                     jnp.where(improved, watched, stop.best),
                     jnp.where(improved, e + 1, stop.best_epoch), bad)
        if cfg.restore_best:
            best = jax.tree.map(lambda b, n: jnp.where(improved, n, b), best, (new_p, new_s))
        return (new_p, new_o, new_s, stop, best), bufs, i + 1

    # The loop's only counter ``i`` starts at the constant 0 (not at the traced ``start``,
    # and ``stop.epoch`` is not updated inside): XLA:CPU then updates the history buffer in
    # place (measured: 10,000 XOR epochs 6-10 ms with a traced start or a second counter,
    # 1.2 ms like this).
    count = end - start

    def cond(c):
        going = c[2] < count
        return going & (c[0][3].reason == RUNNING) if watch else going

    # The learning rate record: inside the loop only if it changes (a schedule); a constant
    # one is filled in after the loop. Written every epoch, a loop-invariant traced value
    # keeps XLA:CPU from updating the history in place (10,000 XOR epochs 7 ms, not 1.2).
    lr_now = _learning_rate(optimizer, opt_state)
    lr_varies = lr_now is not None and _depends_on(
        lambda s: _learning_rate(optimizer, s), opt_state)

    def one_record():
        value = metric_values(model, loss, params, x, y, ("loss",), state=state)["loss"]
        return record(params, opt_state, state, value)

    shapes = jax.eval_shape(one_record)
    names = tuple(shapes)
    dtype = _history_dtype(jnp.result_type(*[s.dtype for s in shapes.values()]))
    # ONE buffer (epochs, records): one row written per epoch
    bufs = jnp.full((cfg.buffer, len(names)), jnp.nan, dtype)
    (params, opt_state, state, stop, best), bufs, done = jax.lax.while_loop(
        cond, body, ((params, opt_state, state, stop, best), bufs, jnp.zeros((), jnp.int32)))
    stop = stop._replace(epoch=start + done)        # ``stop.epoch`` is not carried: see above
    records = {n: bufs[:, j] for j, n in enumerate(names)}
    if lr_now is not None and not lr_varies:
        records["lr"] = jnp.full((cfg.buffer,), lr_now, _history_dtype(jnp.result_type(lr_now)))
    return (params, opt_state, state, stop, best), records


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


@partial(jax.jit, static_argnames=("cfg",))
def _compiled_loop(params, opt_state, state, stop, best, x, y, val, key, hparams, end, limits,
                   *, cfg):
    """:func:`_loop`, its records packed in ONE array (rows: :func:`_record_names`, then
    ``lr``, NaN if unknown) and ``[stop.epoch, stop.reason]``: two transfers to the host."""
    if opt_state is None:       # a one-call run: built inside (no eager dispatch per fit)
        opt_state = _build_optimizer(cfg.optimizer, hparams).init(params)
    carry, records = _loop(cfg, params, opt_state, state, stop, best, x, y, val, key, hparams,
                           end, limits)
    dtype = records["loss"].dtype
    lr = records.get("lr", jnp.full((cfg.buffer,), jnp.nan, dtype))
    packed = jnp.stack([records[n].astype(dtype) for n in _record_names(cfg)] + [lr.astype(dtype)])
    return carry, packed, jnp.stack([carry[3].epoch, carry[3].reason])


def _record_names(cfg: _LoopConfig) -> list:
    """The names of the records :func:`_loop` writes, but ``lr``, in order."""
    from .metrics import metric_name

    names = ["loss"] + [metric_name(getattr(m, "obj", m)) for m in cfg.metrics]
    if cfg.validation:
        names += ["val_loss"] + ["val_" + n for n in names[1:]]
    return names


def _bucket(n: int) -> int:
    return max(MIN_BUFFER, 1 << max(0, (int(n) - 1).bit_length()))


def run_epochs(model, loss, optimizer, params, opt_state, x, y, key, *, epochs: int,
               batch_size: int | None, method: str, batch_sharding=None, state=(),
               regularizer=None):
    """The uncompiled body of :func:`fit`: ``(params, opt_state, losses[epochs])``.

    Pure and traceable, so it can be ``jit``-ed, ``vmap``-ed (sweeps) or
    ``scan``-ed further. ``key`` may be None for a full-batch, key-free model;
    epoch ``e`` uses ``jax.random.fold_in(key, e)``. With layer ``state``
    (not ``()``), returns ``(params, opt_state, losses, state)``.
    """
    static, hparams = _optimizer_parts(optimizer)
    cfg = _LoopConfig(keyed(model), keyed(loss), static, batch_size, method, (), False, False,
                      False, False, None if regularizer is None else keyed(regularizer),
                      batch_sharding, int(epochs))
    (params, opt_state, state_out, _, _), bufs = _loop(
        cfg, params, opt_state, state, _initial_stop(), (), x, y, None, key, hparams,
        jnp.int32(epochs), _limits(None, None, 0.0))
    out = (params, opt_state, bufs["loss"])
    return out if state == () else out + (state_out,)


def _limits(tol, patience, min_delta):
    return {"tol": np.float32(0.0 if tol is None else tol),
            "patience": np.int32(np.iinfo(np.int32).max if patience is None else patience),
            "min_delta": np.float32(min_delta)}


# --- argument checks -----------------------------------------------------------------

def _as_int(value):
    """``value`` as a Python int if it is an integer (NumPy integers included), else as is
    (the argument checks then name what is wrong)."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == () and \
            jnp.issubdtype(value.dtype, jnp.integer):
        return int(value)
    return value


def is_tuple_input(x) -> bool:
    """Whether ``x`` is a graph model's tuple input: a tuple of arrays (``(x, mask)``)."""
    return isinstance(x, tuple) and len(x) > 0 and all(
        hasattr(a, "shape") and hasattr(a, "dtype") for a in x)


def num_examples(x) -> int:
    """The batch size of ``x``, an array or a tuple of arrays (their common first axis)."""
    return (x[0] if is_tuple_input(x) else x).shape[0]


def take_examples(x, i):
    """``x[i]`` of an array or of every array of a tuple input."""
    return tuple(a[i] for a in x) if is_tuple_input(x) else x[i]


def shape_of(x):
    """``x.shape``, or the tuple of the shapes of a tuple input (for messages)."""
    return tuple(tuple(a.shape) for a in x) if is_tuple_input(x) else tuple(x.shape)


def check_data(x, y, where: str, what: str = "x"):
    """Raise clear errors for data that is not arrays, or empty, or mismatched.

    ``x`` may be a tuple of arrays with a common first axis: the tuple input of a
    graph model (``parallel``), e.g. ``(ids, mask)``; ``fit`` batches every entry."""
    prefix = "" if what == "x" else "validation "
    entries = [(prefix + "y", y)]
    if is_tuple_input(x):
        entries = [(f"{prefix}x[{i}]", a) for i, a in enumerate(x)] + entries
    else:
        entries = [(prefix + "x", x)] + entries
    for name, v in entries:
        if isinstance(v, (list, tuple)):
            raise TypeError(f"{where}: {name} is a Python {type(v).__name__}; pass an array, "
                            f"e.g. jnp.asarray({name.split()[-1]}, jnp.float32) (fnnet does not guess "
                            f"dtypes from Python lists)")
        if not hasattr(v, "shape") or not hasattr(v, "dtype"):
            raise TypeError(f"{where}: {name} must be an array, got {type(v).__name__}")
        if len(v.shape) == 0:
            raise ValueError(f"{where}: {name} must have a batch axis (examples first), got a "
                             f"scalar")
    n = num_examples(x)
    if is_tuple_input(x) and any(a.shape[0] != n for a in x):
        raise ValueError(f"{where}: the entries of the tuple {prefix}x have different numbers "
                         f"of examples (shapes {shape_of(x)}); their first axes must match")
    if y.shape[:1] != (n,):
        raise ValueError(f"{where}: {prefix}x has {n} examples (shape {shape_of(x)}) but "
                         f"{prefix}y has shape {tuple(y.shape)}; their first axes must match")
    if n == 0:
        raise ValueError(f"{where}: the {prefix}batch is empty (0 examples, x of "
                         f"shape {shape_of(x)}); pass at least one example")


def check_state_arg(model, state, where: str):
    """A stateful model needs ``state=`` in training (else its statistics would be lost)."""
    if _stateful(model) and state is None:
        raise ValueError(f"{where}: {model.name} has layer state (BatchNorm running "
                         f"statistics); pass state=fn.init_state(model, params) and keep the "
                         f"returned state")


def check_optimizer_object(optimizer, where: str):
    """An optimizer must be built (``fn.optim.sgd(0.1)``), not its constructor."""
    from . import optim

    check = getattr(optim, "check_optimizer", None)
    if check is not None:
        try:
            check(optimizer, where=where)
        except TypeError as err:
            if "where" not in str(err):
                raise
            check(optimizer)
        return
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        hint = (f" (a constructor? call it, e.g. {getattr(optimizer, '__name__', 'sgd')}(0.1))"
                if callable(optimizer) else "")
        raise TypeError(f"{where}: optimizer must have init and update (fnnet's or optax's "
                        f"contract), got {optimizer!r}{hint}")


def _check_opt_state(optimizer, params, opt_state, where: str):
    """``opt_state`` must be what ``optimizer.init(params)`` builds (tree, shapes, dtypes)."""
    want = jax.eval_shape(optimizer.init, params)
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), opt_state)
    ws, gs = jax.tree.structure(want), jax.tree.structure(got)
    if ws != gs:
        raise ValueError(f"{where}: opt_state does not belong to this optimizer and these params "
                         f"(its tree differs from optimizer.init(params)); pass the state "
                         f"returned with these params, or opt_state=None to start afresh")
    for path, w, g in zip(jax.tree_util.tree_flatten_with_path(want)[0],
                          jax.tree.leaves(want), jax.tree.leaves(got)):
        if w.shape != g.shape:
            raise ValueError(f"{where}: opt_state{jax.tree_util.keystr(path[0])} has shape "
                             f"{g.shape}, but optimizer.init(params) gives {w.shape}: the state "
                             f"was built for another model; pass the state returned with these "
                             f"params, or opt_state=None")


def validate_fit_args(model, x, y, *, epochs, batch_size, key, where="fit"):
    """Raise clear errors for bad ``fit`` arguments (shared with sweeps)."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"{where}: epochs must be a positive int, got {epochs!r}")
    check_data(x, y, where)
    n = num_examples(x)
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or \
                not 1 <= batch_size <= n:
            raise ValueError(f"{where}: batch_size must be an int in [1, {n}] (the number of "
                             f"examples) or None for full batch, got {batch_size!r}")
        if key is None:
            raise ValueError(f"{where}: minibatches are reshuffled every epoch from the key; "
                             f"pass key=jax.random.key(0)")
    require_key(model, key, where)


def _check_dp(dp, model, key, method, regularizer):
    from .dp import as_config

    dp = as_config(dp, "fit")
    if key is None:
        raise ValueError("fit(dp=...): DP-SGD draws fresh noise every step from the key; pass "
                         "key=jax.random.key(0)")
    if method != "manual":
        raise ValueError(f"fit(dp=...): the DP-SGD gradient is the hand-written per-example one; "
                         f"method must be 'manual', got {method!r}")
    if regularizer is not None:
        raise ValueError("fit(dp=...): a regularizer's gradient is not per example; drop "
                         "regularizer= (weight decay in the optimizer, e.g. fn.optim.adamw, works)")
    if _stateful(model):
        raise ValueError(f"fit(dp=...): {model.name} has layer state (BatchNorm), whose batch "
                         f"statistics mix the examples; DP-SGD needs per-example gradients. "
                         f"Use LayerNorm instead.")
    return dp


def _check_stopping(tol, patience, min_delta, chunk_size, initial_epoch, epochs):
    if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"fit: chunk_size must be a positive int or None, got {chunk_size!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"fit: tol must be a number >= 0 or None, got {tol!r}")
    if patience is not None and not (isinstance(patience, int) and patience >= 1):
        raise ValueError(f"fit: patience must be a positive int or None, got {patience!r}")
    if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
        raise ValueError(f"fit: min_delta must be a number >= 0, got {min_delta!r}")
    if not (isinstance(initial_epoch, int) and 0 <= initial_epoch < epochs):
        raise ValueError(f"fit: initial_epoch (epochs already done) must be an int in "
                         f"[0, epochs={epochs}), got {initial_epoch!r}; epochs is the total to "
                         f"reach, as in Keras")


# --- fit -------------------------------------------------------------------------------

def _progress_bar(total: int, verbose: bool, initial: int = 0):
    """A tqdm bar (terminal or notebook via ``tqdm.auto``), or None if quiet / tqdm missing."""
    if not verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra: no bar without it
        return None
    return tqdm(total=total, initial=initial, unit="epoch", desc="fit", leave=True)


def _stop_message(reason: int, stop: _Stop, epochs: int, tol, patience, monitor: str) -> str:
    if reason == RUNNING:
        return f"max epochs ({epochs})"
    e = int(stop.epoch)
    if reason == CONVERGED:
        return f"converged at epoch {e} (|loss change| < tol={tol:g})"
    if reason == PATIENCE:
        return (f"patience: {monitor} did not improve for {patience} epochs; stopped at epoch {e} "
                f"(best {float(stop.best):.6g} at epoch {int(stop.best_epoch)})")
    return f"max epochs ({epochs})"


def _check_validation_shapes(model, loss, params, validation, state):
    """Trace the inference forward and the loss on the validation set (abstractly, nothing
    runs) so that a mismatch is reported as the validation set's, before training."""
    def value(p, xv, yv, s):
        return loss.fwd(forward(model, p, xv, state=s if model.has_state else None)[0], yv)[0]

    try:
        jax.eval_shape(value, params, *validation, state)
    except (ValueError, TypeError) as err:
        raise type(err)(f"fit: the validation set (x_val shape {shape_of(validation[0])}, y_val "
                        f"shape {jnp.shape(validation[1])}) does not fit the model/loss: "
                        f"{err}") from err


def fit(model: Layer, loss: Loss, optimizer, params, x, y, *, epochs: int,
        batch_size: int | None = None, key=None, opt_state=None, method: str = "manual",
        validation=None, metrics=("loss",), tol: float | None = None,
        patience: int | None = None, min_delta: float = 0.0, restore_best: bool = False,
        verbose: bool = False, chunk_size: int | None = None, mesh=None, debug: bool = False,
        initial_epoch: int = 0, log=None, regularizer=None, state=None, sharding=None,
        dp=None):
    """Train for up to ``epochs`` epochs in compiled code.

    Args:
      model, loss, optimizer: a Layer, a Loss and an ``(init, update)`` optimizer
        (fnnet's or any object with optax's contract).
      params: initial params (e.g. ``model.init(key, x.shape[1:])``).
      x, y: the whole training set, batch-major arrays (Python lists are refused:
        convert them with the dtype you mean, e.g. ``jnp.asarray(x, jnp.float32)``).
      epochs: the epoch to train up to, counted over the whole training (with
        ``initial_epoch=0``, the number of passes over the data).
      batch_size: ``None`` for full-batch gradient descent; otherwise minibatches
        reshuffled every epoch, the last partial batch dropped.
      key: PRNG key; required for minibatches and for random layers (Dropout).
        Epoch ``e`` uses ``fold_in(key, e)`` (see "exact resume" in :mod:`fnnet.train`).
      opt_state: resume from this optimizer state (default ``optimizer.init(params)``);
        a state built for other params is an error.
      method: ``"manual"`` or ``"autodiff"``.
      validation: ``(x_val, y_val)``, evaluated after every epoch (inference mode):
        ``history["val_loss"]`` and ``history["val_<metric>"]``.
      metrics: names from ``fnnet.metrics.METRICS`` or functions ``(logits, y) ->
        scalar`` (recorded under their ``__name__``). ``"loss"`` is always recorded;
        any other is measured on the whole training set with the params at the END
        of each epoch, in inference mode (``history["accuracy"]``).
      tol: stop when the epoch's mean training loss changed by less than ``tol``
        from the previous epoch's: ``|L_e - L_{e-1}| < tol`` ("converged").
      patience: stop when the monitored value (``val_loss`` with validation, else the
        training loss) has not improved by more than ``min_delta`` on its best for
        ``patience`` epochs in a row.
      restore_best: return the params (and layer state) of the epoch with the best
        monitored value instead of the last ones (the optimizer state stays the last).
      verbose: show a progress bar (tqdm: epoch, loss, metrics, ETA; a widget in
        notebooks). Quiet by default; without tqdm installed there is no bar.
      chunk_size: epochs per compiled call (default: about 100 updates of the bar
        or the log, the whole run in one call when quiet).
      mesh: a ``jax.sharding.Mesh`` for data parallelism (see :mod:`fnnet.sharding`).
      sharding: with ``mesh``, where params and optimizer state live: ``"replicated"``
        (default), ``"fsdp"``, ``"tensor"`` or a policy of :mod:`fnnet.sharding`.
      debug: stop at the first epoch whose loss is non-finite and raise
        ``FloatingPointError`` with :func:`fnnet.find_nonfinite`'s report on the
        params from the START of that epoch (the full training set, that epoch's key).
      initial_epoch: epochs already done (to resume a run exactly; see above).
      log: a path ending in ``.csv`` or ``.jsonl``: the per-epoch records are
        appended to it as training goes (see :mod:`fnnet.runlog`). A file that
        cannot be written is an error before training starts.
      regularizer: e.g. ``fn.l2(1e-4)``: its value is added to the loss and its
        hand-written gradient to the gradients of every step.
      state: the layer state (``fn.init_state``); required for a model with state
        (BatchNorm), and then the new state is returned last.
      dp: ``fn.dp.DPConfig(l2_norm_clip, noise_multiplier)`` (or a dict of those):
        train with DP-SGD (:mod:`fnnet.dp`: per-example clipping and Gaussian noise)
        instead of the ordinary step; needs ``key`` (every step draws noise),
        ``method="manual"``, no regularizer and a stateless model. Exactness and
        resume are those of any run; no privacy accounting.

    Returns:
      ``(params, opt_state, history)`` (``(params, opt_state, history, state)``
      with ``state=``). ``history`` holds NumPy arrays, one entry per epoch run:
      ``"epoch"`` (1-based, over the whole training), ``"loss"`` (the mean
      training loss of the epoch, measured during it, before each step's
      update), the metrics, ``"val_*"``, ``"lr"`` (the learning rate after the
      epoch, when the optimizer is fnnet's) and ``"time"`` (seconds since the
      call started, measured at the end of each compiled chunk and spread evenly
      over its epochs); ``history["stopped"]`` says why the run ended: ``"max
      epochs (N)"``, ``"converged at epoch E (...)"`` or ``"patience: ..."``;
      with ``restore_best``, ``history["best_epoch"]``.
    """
    t0 = time.perf_counter()
    check_method(method)
    epochs = _as_int(epochs)
    batch_size = _as_int(batch_size)
    initial_epoch = _as_int(initial_epoch)
    patience = _as_int(patience)
    chunk_size = _as_int(chunk_size)
    check_optimizer_object(optimizer, "fit")
    validate_fit_args(model, x, y, epochs=epochs, batch_size=batch_size, key=key)
    metrics = check_metrics(metrics)
    _check_stopping(tol, patience, min_delta, chunk_size, initial_epoch, epochs)
    check_state_arg(model, state, "fit")
    if dp is not None:
        dp = _check_dp(dp, model, key, method, regularizer)
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise ValueError("fit: validation must be a pair (x_val, y_val)")
        check_data(*validation, "fit", what="validation")
        validation = tuple(validation)
        _check_validation_shapes(model, loss, params, validation, state)
    if opt_state is not None:
        _check_opt_state(optimizer, params, opt_state, "fit")
    # concrete data, checked on the host before compiling (fnnet.data_checks)
    data_checks.check_dataset("fit", model, loss, params, x, y, state=state)
    if validation is not None:
        data_checks.check_dataset("fit", model, loss, params, *validation, state=state,
                                  validation=True)
    data_checks.check_schedule("fit", optimizer, epochs * (
        1 if batch_size is None else jax.tree.leaves(x)[0].shape[0] // batch_size))
    stateful = _stateful(model)
    layer_state = state if stateful else ()
    writer = runlog.open_log(log, "fit", append=initial_epoch > 0) if log is not None else None

    static, hparams = _optimizer_parts(optimizer)
    hparams = hparams_for(hparams, params)
    batch_sharding = layout = None
    policy = _sharding.check_policy(mesh, sharding, "fit")
    if dp is not None and policy is not None and not isinstance(policy, _sharding.Replicated):
        raise ValueError(f"fit(dp=...): DP-SGD runs with replicated params (mesh= alone: the "
                         f"batch split over the devices); sharding={sharding!r} is not supported "
                         f"with it")
    if mesh is not None:
        if batch_size is not None:
            _sharding.check_divisible(batch_size, mesh, "fit", "batch_size", policy)
        else:
            _sharding.check_divisible(num_examples(x), mesh, "fit", "full batch", policy)
        params, opt_state, layout = _sharding.place(mesh, policy, params, opt_state,
                                                    init=optimizer.init)
        key, layer_state, hparams = _sharding.replicate(mesh, (key, layer_state, hparams))
        if batch_size is None or num_examples(x) % _sharding.batch_groups(mesh, policy) == 0:
            x, y = _sharding.shard_batch(mesh, (x, y), "fit", policy)
        else:   # minibatches are sharded one by one; the data set need not split evenly
            x, y = _sharding.replicate(mesh, (x, y))
        if validation is not None:
            validation = _sharding.replicate(mesh, validation)
        batch_sharding = _sharding.batch_sharding(mesh, policy)

    todo = epochs - initial_epoch
    if chunk_size is None:
        chunk_size = max(1, math.ceil(todo / 100)) if (verbose or log is not None) else todo
    chunk_size = min(chunk_size, todo)
    if opt_state is None and chunk_size < todo:    # several calls: one program for all
        opt_state = optimizer.init(params)
    train_metrics = tuple(m for m in metrics if m != "loss")
    rules = tol is not None or patience is not None
    cfg = _LoopConfig(keyed(model), keyed(loss), static, batch_size, method,
                      tuple(keyed(m) if callable(m) else m for m in train_metrics),
                      validation is not None, rules, bool(debug), bool(restore_best),
                      None if regularizer is None else keyed(regularizer), batch_sharding,
                      _bucket(chunk_size), layout, dp)
    limits = _limits(tol, patience, min_delta)
    names = _record_names(cfg)
    watch = rules or debug or restore_best
    stop = _initial_stop(initial_epoch)
    best = (params, layer_state) if restore_best else ()
    records = []
    bar = _progress_bar(epochs, verbose, initial_epoch)
    monitor = "val_loss" if validation is not None else "loss"
    try:
        for start in range(initial_epoch, epochs, chunk_size):
            end = min(start + chunk_size, epochs)
            (params, opt_state, layer_state, stop, best), packed, flags = _compiled_loop(
                params, opt_state, layer_state, stop, best, x, y, validation, key, hparams,
                np.int32(end), limits, cfg=cfg)
            epoch_done, reason = (end, RUNNING) if not watch else map(int, np.asarray(flags))
            done = epoch_done - start
            packed = np.asarray(packed)[:, :done]
            chunk = dict(zip(names, packed))
            if not np.all(np.isnan(packed[-1])):
                chunk["lr"] = packed[-1]
            t = time.perf_counter() - t0
            prev_t = records[-1]["time"][-1] if records else 0.0
            chunk["time"] = prev_t + (t - prev_t) * np.arange(1, done + 1) / max(done, 1)
            chunk["epoch"] = np.arange(start + 1, start + done + 1)
            chunk = {name: chunk[name] for name in _order(chunk)}
            records.append(chunk)
            if writer is not None:
                writer.write(chunk)
            if bar is not None:
                bar.update(done)
                bar.set_postfix({name: f"{v[-1]:.4g}" for name, v in chunk.items()
                                 if len(v) and name not in ("time", "epoch")})
            if reason != RUNNING:
                break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()

    history = {name: np.concatenate([r[name] for r in records]) for name in records[0]}
    host_stop = jax.device_get(stop) if watch else None     # reason: the last chunk's
    if reason == NONFINITE:
        from .debug import find_nonfinite

        e = int(host_stop.epoch)
        report = find_nonfinite(model, loss, params, x, y, key=epoch_key(key, e - 1))
        raise FloatingPointError(f"fit(debug=True): the training loss became non-finite at "
                                 f"epoch {e} ({history['loss'][-1]}).\n{report}")
    history["stopped"] = _stop_message(reason, host_stop, epochs, tol, patience, monitor)
    if restore_best:
        history["best_epoch"] = int(host_stop.best_epoch)
        if int(host_stop.best_epoch) > initial_epoch:
            params, layer_state = best
    if stateful:
        return params, opt_state, history, layer_state
    return params, opt_state, history


def _order(history):
    first = ["epoch", "loss"]
    rest = [n for n in history if n not in first + ["lr", "time"]]
    return first + rest + [n for n in ("lr", "time") if n in history]
