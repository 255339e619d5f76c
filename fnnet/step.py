"""One training step: ``train_step`` (forward, backward, optimizer update: ONE compiled program).

The floor of :mod:`fnnet.train`: the compiled loop (:mod:`fnnet.loop`) runs
:func:`step_fn` once per (mini)batch, ``fit`` and ``sweep`` drive that loop.

**What compiles.** The step is cached on the model's and the loss's *structure*
(:mod:`fnnet.structure`: ``serial(Dense(3), Relu)`` built twice is the same model),
the optimizer's KIND, ``method``, the regularizer and the shapes of the data. An fnnet
optimizer's hyperparameters (the learning rate, betas...) are data of the compiled
program: :func:`optimizer_kind` splits an optimizer into its kind (static) and its
numbers (traced), :func:`build_optimizer` puts it back together inside the trace
(:func:`fnnet.optim.split_hparams` / ``merge_hparams``). Any other optimizer (optax)
is one static object, compared structurally: equal hyperparameters reuse, new ones
recompile.
"""

from __future__ import annotations

import collections
from functools import partial
from typing import Any, NamedTuple

import jax

from . import sharding as _sharding
from .core import Layer, Loss
from .grad import check_method, require_key, value_and_grad
from .optim.base import apply_updates, current_learning_rate
from .optim.recipe import hparams_for, merge_hparams, split_hparams
from .structure import keyed
from .validation import check_data, check_optimizer_object, check_state_arg, stateful

__all__ = ["train_step", "step_fn", "optimizer_kind", "build_optimizer", "learning_rate"]


# --- optimizers: kind (static) and hyperparameters (data) ------------------------------

_KINDS: collections.OrderedDict = collections.OrderedDict()   # id -> (optimizer, kind)


def optimizer_kind(optimizer):
    """``(static, hparams)``: what selects the compiled program (a :func:`~fnnet.structure.keyed`
    object, hashable) and its traced data (``None`` for an optimizer that is not fnnet's).

    The split of an optimizer seen recently is reused (optimizers are immutable), which
    keeps a cached ``fit`` call's host work small (a 10,000-epoch XOR run is ~1 ms).
    """
    hit = _KINDS.get(id(optimizer))
    if hit is not None and hit[0] is optimizer:
        return hit[1]
    parts = split_hparams(optimizer)
    kind = (keyed(parts[0]), parts[1]) if parts is not None else (keyed(optimizer), None)
    _KINDS[id(optimizer)] = (optimizer, kind)
    if len(_KINDS) > 64:
        _KINDS.popitem(last=False)
    return kind


def build_optimizer(static, hparams):
    """The optimizer from :func:`optimizer_kind`'s two parts (``hparams`` may be traced)."""
    return static.obj if hparams is None else merge_hparams(static.obj, hparams)


def learning_rate(optimizer, opt_state):
    """The learning rate the optimizer's NEXT step uses, or None if unknown (traceable)."""
    try:
        return current_learning_rate(optimizer, opt_state)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


# --- one step ------------------------------------------------------------------------

def step_fn(model: Layer, loss: Loss, optimizer, method: str, regularizer=None, layout=None,
            dp=None):
    """``step(params, opt_state, state, x, y, key) -> (params, opt_state, state, value)``.

    Pure and traceable: ``value_and_grad`` (``method``), then ``optimizer.update`` and
    ``apply_updates``; ``value`` is the loss BEFORE the update. ``state`` is the layer
    state (``()`` for a stateless model). ``layout`` (:class:`fnnet.sharding.Layout`):
    keep gradients, params and optimizer state in the shardings of the params and state
    (e.g. FSDP's): each device updates only its own shard. ``dp`` (a
    :class:`fnnet.dp.DPConfig`): the DP-SGD step instead (:func:`fnnet.dp.fit_step`).
    """
    if dp is not None:
        from .dp import fit_step

        return fit_step(model, loss, optimizer, dp)
    kwargs = {} if regularizer is None else {"regularizer": regularizer}
    vg = value_and_grad(model, loss, method=method, **kwargs)
    has_state = stateful(model)

    def step(params, opt_state, state, x, y, key):
        if has_state:
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


class StepConfig(NamedTuple):
    """The static part of a compiled step (hashable)."""

    model: Any
    loss: Any
    optimizer: Any
    method: str
    regularizer: Any
    layout: Any = None          # fnnet.sharding.Layout of a sharded (params, opt_state)


@partial(jax.jit, static_argnames=("cfg",))
def _compiled_step(params, opt_state, state, x, y, key, hparams, *, cfg):
    opt = build_optimizer(cfg.optimizer, hparams)
    reg = None if cfg.regularizer is None else cfg.regularizer.obj
    step = step_fn(cfg.model.obj, cfg.loss.obj, opt, cfg.method, reg, cfg.layout)
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
    kind (see :mod:`fnnet.step`): ``train_step`` built again, or with a new
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
    static, hparams = optimizer_kind(optimizer)
    cfg = StepConfig(keyed(model), keyed(loss), static, method,
                     None if regularizer is None else keyed(regularizer))
    has_state = stateful(model)
    policy = _sharding.check_policy(mesh, sharding, "train_step")

    def arguments(params, opt_state, x, y, key, state):
        """The compiled step's arguments, placed on the mesh (if any), and its config."""
        hp, c = hparams_for(hparams, params), cfg
        if mesh is not None:
            params, opt_state, layout = _sharding.place(mesh, policy, params, opt_state)
            key, state, hp = _sharding.replicate(mesh, (key, state, hp))
            x, y = _sharding.shard_batch(mesh, (x, y), "train_step", policy)
            c = cfg._replace(layout=layout)
        return (params, opt_state, state if has_state else (), x, y, key, hp), c

    def step(params, opt_state, x, y, *, key=None, state=None):
        require_key(model, key, "train_step")
        check_state_arg(model, state, "train_step")
        check_data(x, y, "train_step")
        args, c = arguments(params, opt_state, x, y, key, state)
        params, opt_state, new_state, value = _compiled_step(*args, cfg=c)
        return (params, opt_state, value, new_state) if has_state else (params, opt_state, value)

    def lower(params, opt_state, x, y, *, key=None, state=None):
        """``jax.jit``'s ``lower`` of the compiled step at these arguments (for inspection;
        placed on the mesh as ``step`` places them)."""
        args, c = arguments(params, opt_state, x, y, key, state)
        return _compiled_step.lower(*args, cfg=c)

    step.lower = lower
    return step
