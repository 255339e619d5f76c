"""Sweeps: train N models at once in ONE compiled, vmapped run.

::

    params, opt_state, history = fn.sweep(
        net, loss, lambda learning_rate: fn.optim.adam(learning_rate), x, y,
        keys=jax.random.split(jax.random.key(0), 8),           # one key per run
        hparams={"learning_rate": jnp.geomspace(1e-3, 1e-1, 8)},
        epochs=1000)
    history["loss"].shape        # (8, 1000)
    jax.tree.map(jnp.shape, params)   # every leaf gets a leading axis of 8

Run ``i`` does exactly what this does, but all N side by side under ``jax.vmap``
of the loop :func:`fnnet.fit` compiles (:func:`fnnet.loop.run_epochs`), inside one
``jax.jit``::

    init_key, fit_key = jax.random.split(keys[i])
    params = model.init(init_key, x.shape[1:])          # or init(init_key)
    opt = optimizer(**{name: v[i] for name, v in hparams.items()})
    fn.fit(model, loss, opt, params, x, y, epochs=epochs, batch_size=batch_size, key=fit_key)

* ``keys``: a key array of shape ``(N,)``, or a sequence of int seeds (run ``i``
  uses ``jax.random.key(seeds[i])``), or ONE key shared by every run (the runs
  then differ only by their hyperparameters: same init, same batches). Raw
  uint32 keys (``jax.random.PRNGKey``) are key data, never seeds.
* ``hparams``: ``{name: array of shape (N,)}``, passed to ``optimizer`` as traced
  scalars. Any hyperparameter that only enters arithmetic can be swept
  (learning rates, betas, eps, decay rates, schedule values); one that decides
  the optimizer's structure (``momentum=0`` vs ``> 0``) cannot.
* ``optimizer``: a function ``(**hparams) -> Optimizer``, or an optimizer itself
  when ``hparams`` is empty (a seed sweep).

The compiled sweep is cached on the structure of the model, loss, optimizer
function and ``init`` (:mod:`fnnet.structure`: fnnet's objects are their
constructor calls; any other function is itself), ``batch_size``, ``method``, the hyperparameter names and the
shapes. The number of epochs and the hyperparameter values are data (epochs are
bucketed to powers of two, as in :func:`fnnet.fit`).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .core import Layer, Loss
from .grad import check_method
from .loop import bucket, run_epochs
from .step import build_optimizer, optimizer_kind
from .structure import keyed
from .validation import as_int, check_state_arg, stateful, validate_fit_args

__all__ = ["sweep"]


def _is_optimizer(obj) -> bool:
    return hasattr(obj, "init") and hasattr(obj, "update")


def check_optimizer_or_factory(optimizer):
    """An optimizer, or a function ``(**hparams) -> optimizer`` (fnnet's factories too)."""
    if not _is_optimizer(optimizer) and not callable(optimizer):
        raise TypeError(f"sweep: optimizer must be an optimizer or a function (**hparams) -> "
                        f"optimizer, got {optimizer!r}")


def _as_keys(keys):
    """A typed key array (shape ``()``: one shared key; ``(N,)``: one per run) from
    typed keys, raw uint32 key data (``jax.random.PRNGKey``: ``(2,)`` or ``(N, 2)``)
    or int seeds."""
    if isinstance(keys, jax.Array):
        if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
            return keys
        if keys.dtype == jnp.uint32 and keys.ndim in (1, 2):  # raw key data, not seeds
            return jax.random.wrap_key_data(keys)
    seeds = np.asarray(list(keys) if not isinstance(keys, (np.ndarray, jax.Array)) else keys)
    if not np.issubdtype(seeds.dtype, np.integer) or seeds.ndim != 1:
        raise TypeError("sweep: keys must be a key array (jax.random.split(key, n)), one key, "
                        f"or a 1-D sequence of int seeds; got {seeds.dtype} of shape {seeds.shape}")
    return jax.vmap(jax.random.key)(jnp.asarray(seeds))


class _SweepConfig(NamedTuple):
    """The static part of a compiled sweep (hashable)."""

    model: Any              # structure.keyed
    loss: Any               # structure.keyed
    optimizer: Any          # a built optimizer's kind (step.optimizer_kind), or None
    factory: Any            # structure.keyed function (**hparams) -> optimizer, or None
    init: Any               # structure.keyed function key -> params, or None
    batch_size: int | None
    method: str
    regularizer: Any        # structure.keyed or None
    buffer: int             # epochs, bucketed (loop.bucket)
    shared_key: bool
    shared_hparams: bool


@partial(jax.jit, static_argnames=("cfg",))
def _compiled_sweep(keys, hparams, opt_hparams, state, x, y, end, *, cfg):
    model = cfg.model.obj

    def one(key, hp):
        init_key, fit_key = jax.random.split(key)
        params = model.init(init_key, x.shape[1:]) if cfg.init is None else cfg.init.obj(init_key)
        opt = (build_optimizer(cfg.optimizer, opt_hparams) if cfg.factory is None
               else cfg.factory.obj(**hp))
        out = run_epochs(model, cfg.loss.obj, opt, params, opt.init(params), x, y, fit_key,
                         epochs=end, buffer=cfg.buffer, batch_size=cfg.batch_size,
                         method=cfg.method, state=state,
                         regularizer=None if cfg.regularizer is None else cfg.regularizer.obj)
        params, opt_state, losses = out[:3]
        return params, opt_state, out[3] if len(out) == 4 else (), losses

    return jax.vmap(one, in_axes=(None if cfg.shared_key else 0,
                                  None if cfg.shared_hparams else 0))(keys, hparams)


def sweep(model: Layer, loss: Loss, optimizer, x, y, *, keys, hparams=None, epochs: int,
          batch_size: int | None = None, method: str = "manual", init=None, regularizer=None,
          state=None):
    """Train N models that differ by key and/or hyperparameters in one compiled call.

    Returns ``(params, opt_state, history)``: params and optimizer states stacked
    along a new leading axis of size N, and ``history["loss"]`` of shape
    ``(N, epochs)`` (NumPy). See the module docstring for the arguments.

    ``regularizer`` as in :func:`fnnet.fit`. A model with layer state (BatchNorm)
    needs ``state=`` (its initial state, shared by every run) and returns the
    final states, stacked per run, last: ``(params, opt_state, history, state)``.
    """
    check_method(method)
    check_optimizer_or_factory(optimizer)
    epochs = as_int(epochs)
    batch_size = as_int(batch_size)
    hparams = {} if hparams is None else {k: jnp.asarray(v) for k, v in dict(hparams).items()}
    if _is_optimizer(optimizer) and hparams:
        raise ValueError("sweep: hparams were given but optimizer is already built; pass a "
                         "function, e.g. lambda learning_rate: fn.optim.sgd(learning_rate)")
    sizes = {name: v.shape for name, v in hparams.items()}
    for name, shape in sizes.items():
        if len(shape) != 1:
            raise ValueError(f"sweep: hparams[{name!r}] must be 1-D (one value per run), got shape {shape}")
    keys = _as_keys(keys)
    shared_key = keys.ndim == 0
    validate_fit_args(model, x, y, epochs=epochs, batch_size=batch_size, key=keys, where="sweep")
    counts = {f"hparams[{name!r}]": shape[0] for name, shape in sizes.items()}
    if not shared_key:
        counts["keys"] = keys.shape[0]
    if not counts:
        raise ValueError("sweep: one shared key and no hparams is a single run; pass several "
                         "keys or hyperparameter arrays")
    if len(set(counts.values())) != 1:
        raise ValueError(f"sweep: every swept argument needs the same number of runs, got {counts}")
    has_state = stateful(model)
    check_state_arg(model, state, "sweep")
    built = _is_optimizer(optimizer)
    static, opt_hparams = optimizer_kind(optimizer) if built else (None, None)
    cfg = _SweepConfig(keyed(model), keyed(loss), static, None if built else keyed(optimizer),
                       None if init is None else keyed(init), batch_size, method,
                       None if regularizer is None else keyed(regularizer), bucket(epochs),
                       shared_key, not hparams)
    params, opt_state, new_state, losses = _compiled_sweep(
        keys, hparams, opt_hparams, state if has_state else (), x, y, np.int32(epochs), cfg=cfg)
    history = {"loss": np.asarray(losses)[:, :epochs]}
    if has_state:
        return params, opt_state, history, new_state
    return params, opt_state, history
