"""Training: ``fit`` runs whole trainings in compiled code; ``train_step`` is one compiled step.

Three floors, one module each:

* :mod:`fnnet.step`: ``train_step`` and the step function (forward, backward,
  optimizer update), and how an optimizer splits into its kind and its numbers;
* :mod:`fnnet.loop`: the compiled loop (epochs in a ``lax.while_loop``, minibatches in
  a ``lax.scan``, one history buffer, the stopping rules evaluated after every epoch);
* this module: ``fit``, the host side: argument checks, chunks of epochs between
  progress-bar and log updates, the history, why the run stopped.

``fit`` runs the epochs inside compiled code. Quiet runs are ONE device call (10,000
XOR epochs in about a millisecond); with a progress bar (``verbose``) or a log file
(``log=``) the run is cut into chunks of epochs and the host reports between chunks.

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

**Options.** ``fit``'s optional behaviour comes in two small records,
:class:`Stopping` (``tol``, ``patience``, ``min_delta``, ``restore_best``, ``debug``)
and :class:`Reporting` (``metrics``, ``verbose``, ``log``, ``chunk_size``)::

    fn.fit(net, loss, opt, p, x, y, epochs=500, validation=(xv, yv),
           stopping=fn.Stopping(patience=20, restore_best=True),
           reporting=fn.Reporting(metrics=("loss", "accuracy"), verbose=True))

Each field may also be passed as a keyword of its own (``fit(..., patience=20,
verbose=True)``): the same thing, as before the records existed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import data_checks, runlog
from . import sharding as _sharding
from .core import Layer, Loss, forward
from .grad import check_method
from .loop import (NONFINITE, RUNNING, CONVERGED, PATIENCE, Carry, LoopConfig, Stop,
                   bucket, epoch_fn, epoch_key, initial_stop, record_names, run_epochs,
                   run_loop, stopping_limits)
from .metrics import check_metrics
from .step import _compiled_step  # noqa: F401  (its cache, inspected by tests as fn.train's)
from .step import build_optimizer, optimizer_kind, train_step
from .structure import keyed
from .optim.recipe import hparams_for
from .validation import (as_int, check_data, check_opt_state, check_optimizer_object,
                         check_state_arg, num_examples, shape_of, stateful,
                         validate_fit_args)

__all__ = ["fit", "Stopping", "Reporting", "train_step", "run_epochs", "epoch_fn",
           "validate_fit_args"]
# (``train_step``, ``epoch_fn``, ``run_epochs`` and ``validate_fit_args`` live on the
# floors below and stay importable from here, as from the one-module ``fnnet.train``.)


# --- options ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stopping:
    """When ``fit`` stops before ``epochs``, and which params it returns.

    Attributes:
      tol: stop when the epoch's mean training loss changed by less than ``tol``
        from the previous epoch's: ``|L_e - L_{e-1}| < tol`` ("converged").
      patience: stop when the monitored value (``val_loss`` with validation, else the
        training loss) has not improved by more than ``min_delta`` on its best for
        ``patience`` epochs in a row.
      min_delta: the improvement ``patience`` asks for (default 0).
      restore_best: return the params (and layer state) of the epoch with the best
        monitored value instead of the last ones (the optimizer state stays the last).
      debug: stop at the first epoch whose loss is non-finite and raise
        ``FloatingPointError`` with :func:`fnnet.find_nonfinite`'s report on the
        params from the START of that epoch (the full training set, that epoch's key).
    """

    tol: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = False
    debug: bool = False


@dataclasses.dataclass(frozen=True)
class Reporting:
    """What ``fit`` records per epoch and shows while it trains.

    Attributes:
      metrics: names from ``fnnet.metrics.METRICS`` or functions ``(logits, y) ->
        scalar`` (recorded under their ``__name__``). ``"loss"`` is always recorded;
        any other is measured on the whole training set with the params at the END
        of each epoch, in inference mode (``history["accuracy"]``).
      verbose: show a progress bar (tqdm: epoch, loss, metrics, ETA; a widget in
        notebooks). Quiet by default; without tqdm installed there is no bar.
      log: a path ending in ``.csv`` or ``.jsonl``: the per-epoch records are
        appended to it as training goes (see :mod:`fnnet.runlog`). A file that
        cannot be written is an error before training starts.
      chunk_size: epochs per compiled call (default: about 100 updates of the bar
        or the log, the whole run in one call when quiet).
    """

    metrics: Any = ("loss",)
    verbose: bool = False
    log: Any = None
    chunk_size: int | None = None


_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (Stopping, Reporting)}


def _gather_options(stopping, reporting, options: dict):
    """The two records from ``stopping=``/``reporting=`` and the flat keywords."""
    out = []
    for cls, given, arg in ((Stopping, stopping, "stopping"), (Reporting, reporting, "reporting")):
        flat = {k: options.pop(k) for k in _FIELDS[cls] if k in options}
        if given is None:
            given = cls(**flat)
        elif not isinstance(given, cls):
            raise TypeError(f"fit: {arg} must be fn.{cls.__name__}(...), got {given!r}")
        elif flat:
            raise TypeError(f"fit: {', '.join(flat)} given both as keyword(s) and inside "
                            f"{arg}=fn.{cls.__name__}(...); pass each option once")
        out.append(given)
    if options:
        raise TypeError(f"fit() got an unexpected keyword argument {next(iter(options))!r}")
    return out


# --- argument checks ---------------------------------------------------------------------

def _check_options(stop: Stopping, report: Reporting, initial_epoch, epochs):
    chunk_size, tol, patience, min_delta = (report.chunk_size, stop.tol, stop.patience,
                                            stop.min_delta)
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
    if stateful(model):
        raise ValueError(f"fit(dp=...): {model.name} has layer state (BatchNorm), whose batch "
                         f"statistics mix the examples; DP-SGD needs per-example gradients. "
                         f"Use LayerNorm instead.")
    return dp


def _check_validation(model, loss, params, validation, state):
    """``validation`` as a pair of arrays that fit the model and the loss: its shapes are
    traced (abstractly, nothing runs) so that a mismatch is reported as the validation
    set's, before training."""
    if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
        raise ValueError("fit: validation must be a pair (x_val, y_val)")
    check_data(*validation, "fit", what="validation")

    def value(p, xv, yv, s):
        return loss.fwd(forward(model, p, xv, state=s if stateful(model) else None)[0], yv)[0]

    try:
        jax.eval_shape(value, params, *validation, state)
    except (ValueError, TypeError) as err:
        raise type(err)(f"fit: the validation set (x_val shape {shape_of(validation[0])}, y_val "
                        f"shape {jnp.shape(validation[1])}) does not fit the model/loss: "
                        f"{err}") from err
    return tuple(validation)


# --- the compiled run of one chunk ------------------------------------------------------

@partial(jax.jit, static_argnames=("cfg",))
def _compiled_loop(carry, data, hparams, end, limits, *, cfg):
    """:func:`fnnet.loop.run_loop`, its records packed in ONE array (rows:
    :func:`~fnnet.loop.record_names`, then ``lr``, NaN if unknown) and ``[stop.epoch,
    stop.reason]``: two transfers to the host."""
    optimizer = build_optimizer(cfg.optimizer, hparams)
    if carry.opt_state is None:       # a one-call run: built inside (no eager dispatch per fit)
        carry = carry._replace(opt_state=optimizer.init(carry.params))
    carry, records = run_loop(cfg, optimizer, carry, data, end, limits)
    dtype = records["loss"].dtype
    lr = records.get("lr", jnp.full((cfg.buffer,), jnp.nan, dtype))
    packed = jnp.stack([records[n].astype(dtype) for n in record_names(cfg)] + [lr.astype(dtype)])
    return carry, packed, jnp.stack([carry.stop.epoch, carry.stop.reason])


# --- fit -------------------------------------------------------------------------------

def fit(model: Layer, loss: Loss, optimizer, params, x, y, *, epochs: int,
        batch_size: int | None = None, key=None, opt_state=None, state=None,
        initial_epoch: int = 0, validation=None, stopping: Stopping | None = None,
        reporting: Reporting | None = None, method: str = "manual", regularizer=None,
        mesh=None, sharding=None, dp=None, **options):
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
      state: the layer state (``fn.init_state``); required for a model with state
        (BatchNorm), and then the new state is returned last.
      initial_epoch: epochs already done (to resume a run exactly; see above).
      validation: ``(x_val, y_val)``, evaluated after every epoch (inference mode):
        ``history["val_loss"]`` and ``history["val_<metric>"]``.
      stopping: :class:`Stopping` (``tol``, ``patience``, ``min_delta``,
        ``restore_best``, ``debug``): when to stop early.
      reporting: :class:`Reporting` (``metrics``, ``verbose``, ``log``,
        ``chunk_size``): what is recorded and shown.
      method: ``"manual"`` or ``"autodiff"``.
      regularizer: e.g. ``fn.l2(1e-4)``: its value is added to the loss and its
        hand-written gradient to the gradients of every step.
      mesh: a ``jax.sharding.Mesh`` for data parallelism (see :mod:`fnnet.sharding`).
      sharding: with ``mesh``, where params and optimizer state live: ``"replicated"``
        (default), ``"fsdp"``, ``"tensor"`` or a policy of :mod:`fnnet.sharding`.
      dp: ``fn.dp.DPConfig(l2_norm_clip, noise_multiplier)`` (or a dict of those):
        train with DP-SGD (:mod:`fnnet.dp`: per-example clipping and Gaussian noise)
        instead of the ordinary step; needs ``key`` (every step draws noise),
        ``method="manual"``, no regularizer and a stateless model. Exactness and
        resume are those of any run; no privacy accounting.
      **options: any field of :class:`Stopping` or :class:`Reporting` as a keyword
        of its own (``tol=1e-6``, ``verbose=True``), instead of the record.

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
    stop_opts, report = _gather_options(stopping, reporting, options)
    check_method(method)
    epochs, batch_size, initial_epoch = as_int(epochs), as_int(batch_size), as_int(initial_epoch)
    if as_int(stop_opts.patience) is not stop_opts.patience:
        stop_opts = dataclasses.replace(stop_opts, patience=as_int(stop_opts.patience))
    if as_int(report.chunk_size) is not report.chunk_size:
        report = dataclasses.replace(report, chunk_size=as_int(report.chunk_size))
    check_optimizer_object(optimizer, "fit")
    validate_fit_args(model, x, y, epochs=epochs, batch_size=batch_size, key=key)
    metrics = check_metrics(report.metrics)
    _check_options(stop_opts, report, initial_epoch, epochs)
    check_state_arg(model, state, "fit")
    if dp is not None:
        dp = _check_dp(dp, model, key, method, regularizer)
    if validation is not None:
        validation = _check_validation(model, loss, params, validation, state)
    if opt_state is not None:
        check_opt_state(optimizer, params, opt_state, "fit")
    # concrete data, checked on the host before compiling (fnnet.data_checks)
    data_checks.check_dataset("fit", model, loss, params, x, y, state=state)
    if validation is not None:
        data_checks.check_dataset("fit", model, loss, params, *validation, state=state,
                                  validation=True)
    data_checks.check_schedule("fit", optimizer, epochs * (
        1 if batch_size is None else num_examples(x) // batch_size))
    has_state = stateful(model)
    layer_state = state if has_state else ()
    log = report.log
    writer = runlog.open_log(log, "fit", append=initial_epoch > 0) if log is not None else None

    static, hparams = optimizer_kind(optimizer)
    hparams = hparams_for(hparams, params)
    batch_sharding = layout = None
    policy = _sharding.check_policy(mesh, sharding, "fit")
    if dp is not None and policy is not None and not isinstance(policy, _sharding.Replicated):
        raise ValueError(f"fit(dp=...): DP-SGD runs with replicated params (mesh= alone: the "
                         f"batch split over the devices); sharding={sharding!r} is not supported "
                         f"with it")
    if mesh is not None:
        (params, opt_state, layout), (key, layer_state, hparams), (x, y), validation, \
            batch_sharding = _place_on_mesh(mesh, policy, optimizer, params, opt_state,
                                            (key, layer_state, hparams), x, y, validation,
                                            batch_size)

    todo = epochs - initial_epoch
    chunk_size = report.chunk_size
    if chunk_size is None:
        chunk_size = max(1, math.ceil(todo / 100)) if (report.verbose or log is not None) else todo
    chunk_size = min(chunk_size, todo)
    if opt_state is None and chunk_size < todo:    # several calls: one program for all
        opt_state = optimizer.init(params)
    rules = stop_opts.tol is not None or stop_opts.patience is not None
    cfg = LoopConfig(keyed(model), keyed(loss), static, batch_size, method,
                     tuple(keyed(m) if callable(m) else m for m in metrics if m != "loss"),
                     validation is not None, rules, bool(stop_opts.debug),
                     bool(stop_opts.restore_best),
                     None if regularizer is None else keyed(regularizer), batch_sharding,
                     bucket(chunk_size), layout, dp)
    limits = _on_device(stopping_limits(stop_opts.tol, stop_opts.patience, stop_opts.min_delta))
    carry = Carry(params, opt_state, layer_state, _on_device(initial_stop(initial_epoch)),
                  (params, layer_state) if stop_opts.restore_best else ())
    data = (x, y, validation, key)
    names = record_names(cfg)
    records = []
    bar = _progress_bar(epochs, report.verbose, initial_epoch)
    reason = RUNNING
    try:
        for start in range(initial_epoch, epochs, chunk_size):
            end = min(start + chunk_size, epochs)
            carry, packed, flags = _compiled_loop(carry, data, hparams, np.int32(end), limits,
                                                  cfg=cfg)
            epoch_done, reason = (end, RUNNING) if not cfg.watch else map(int, np.asarray(flags))
            chunk = _chunk(names, np.asarray(packed), start, epoch_done - start,
                           time.perf_counter() - t0, records)
            records.append(chunk)
            if writer is not None:
                writer.write(chunk)
            if bar is not None:
                bar.update(len(chunk["epoch"]))
                bar.set_postfix({name: f"{v[-1]:.4g}" for name, v in chunk.items()
                                 if len(v) and name not in ("time", "epoch")})
            if reason != RUNNING:
                break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()

    history = (dict(records[0]) if len(records) == 1 else
               {name: np.concatenate([r[name] for r in records]) for name in records[0]})
    params, opt_state, layer_state = carry.params, carry.opt_state, carry.state
    stop = jax.device_get(carry.stop) if cfg.watch else None     # reason: the last chunk's
    if reason == NONFINITE:
        from .debug import find_nonfinite

        e = int(stop.epoch)
        report_text = find_nonfinite(model, loss, params, x, y, key=epoch_key(key, e - 1))
        raise FloatingPointError(f"fit(debug=True): the training loss became non-finite at "
                                 f"epoch {e} ({history['loss'][-1]}).\n{report_text}")
    monitor = "val_loss" if validation is not None else "loss"
    history["stopped"] = _stop_message(reason, stop, epochs, stop_opts, monitor)
    if stop_opts.restore_best:
        history["best_epoch"] = int(stop.best_epoch)
        if int(stop.best_epoch) > initial_epoch:
            params, layer_state = carry.best
    if has_state:
        return params, opt_state, history, layer_state
    return params, opt_state, history


@functools.lru_cache(maxsize=64)
def _on_device(scalars):
    """A NamedTuple of NumPy scalars as device arrays, made once per value (immutable):
    a compiled call takes them faster than NumPy's (a cached XOR ``fit`` is ~1 ms)."""
    return jax.device_put(scalars)


def _place_on_mesh(mesh, policy, optimizer, params, opt_state, replicated, x, y, validation,
                   batch_size):
    """Data parallelism (and ``policy``'s params placement): ``(params, opt_state,
    layout)`` placed, ``replicated`` (key, layer state, hyperparameters) copied to every
    device, the data split over the batch axes (or replicated when minibatches are
    sharded one by one), the validation set replicated, and the minibatch sharding."""
    if batch_size is not None:
        _sharding.check_divisible(batch_size, mesh, "fit", "batch_size", policy)
    else:
        _sharding.check_divisible(num_examples(x), mesh, "fit", "full batch", policy)
    placed = _sharding.place(mesh, policy, params, opt_state, init=optimizer.init)
    replicated = _sharding.replicate(mesh, replicated)
    if batch_size is None or num_examples(x) % _sharding.batch_groups(mesh, policy) == 0:
        xy = _sharding.shard_batch(mesh, (x, y), "fit", policy)
    else:   # minibatches are sharded one by one; the data set need not split evenly
        xy = _sharding.replicate(mesh, (x, y))
    if validation is not None:
        validation = _sharding.replicate(mesh, validation)
    return placed, replicated, xy, validation, _sharding.batch_sharding(mesh, policy)


def _chunk(names, packed, start, done, t, records) -> dict:
    """One compiled call's records as ``{name: array}`` (``done`` epochs from ``start``)."""
    packed = packed[:, :done]
    chunk = dict(zip(names, packed))
    if not np.all(np.isnan(packed[-1])):
        chunk["lr"] = packed[-1]
    prev_t = records[-1]["time"][-1] if records else 0.0
    chunk["time"] = prev_t + (t - prev_t) * np.arange(1, done + 1) / max(done, 1)
    chunk["epoch"] = np.arange(start + 1, start + done + 1)
    return {name: chunk[name] for name in _order(chunk)}


def _progress_bar(total: int, verbose: bool, initial: int = 0):
    """A tqdm bar (terminal or notebook via ``tqdm.auto``), or None if quiet / tqdm missing."""
    if not verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra: no bar without it
        return None
    return tqdm(total=total, initial=initial, unit="epoch", desc="fit", leave=True)


def _stop_message(reason: int, stop: Stop, epochs: int, opts: Stopping, monitor: str) -> str:
    if reason == CONVERGED:
        return f"converged at epoch {int(stop.epoch)} (|loss change| < tol={opts.tol:g})"
    if reason == PATIENCE:
        return (f"patience: {monitor} did not improve for {opts.patience} epochs; stopped at "
                f"epoch {int(stop.epoch)} (best {float(stop.best):.6g} at epoch "
                f"{int(stop.best_epoch)})")
    return f"max epochs ({epochs})"


def _order(history):
    first = ["epoch", "loss"]
    rest = [n for n in history if n not in first + ["lr", "time"]]
    return first + rest + [n for n in ("lr", "time") if n in history]
