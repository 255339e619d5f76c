"""Compiled training: ``train_step`` (one jitted step) and ``fit`` (whole runs compiled).

``train_step`` returns ONE ``jax.jit``-compiled function doing forward, backward
and optimizer update; it traces once per input shape/dtype and is reused.

``fit`` runs all epochs inside compiled code (``jax.lax.scan`` over epochs, and
over minibatches within an epoch), so a 10,000-epoch run is one device call. The
compiled run is cached by ``jax.jit`` on (model, loss, optimizer, epochs,
batch_size, method) and the shapes of the data: calling ``fit`` again with the
same objects re-uses it without recompiling.

Minibatches (``batch_size`` set): each epoch draws a fresh permutation from
the key and uses ``n // batch_size`` full batches; the last partial batch (the
``n % batch_size`` examples left over by that permutation) is dropped, so every
step has the same shape and nothing recompiles. Different examples are dropped
in different epochs.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .core import Layer, Loss
from .grad import check_method, require_key, value_and_grad
from .optim.base import apply_updates


def _step_fn(model: Layer, loss: Loss, optimizer, method: str):
    vg = value_and_grad(model, loss, method=method)

    def step(params, opt_state, x, y, *, key=None):
        value, grads = vg(params, x, y, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return apply_updates(params, updates), opt_state, value

    return step


def train_step(model: Layer, loss: Loss, optimizer, *, method: str = "manual"):
    """Return ``step(params, opt_state, x, y, *, key=None) -> (params, opt_state, loss)``.

    One ``jax.jit``-compiled function: ``value_and_grad`` (manual by default),
    then ``optimizer.update`` and ``apply_updates``. ``loss`` is the value BEFORE
    the update. A model containing a random layer requires ``key``.
    """
    check_method(method)
    step = _step_fn(model, loss, optimizer, method)

    def checked(params, opt_state, x, y, *, key=None):
        require_key(model, key, "train_step")
        return step(params, opt_state, x, y, key=key)

    return jax.jit(checked)


def _epoch_keys(key, epochs):
    if key is None:
        return None
    return jax.random.split(key, epochs)


def run_epochs(model, loss, optimizer, params, opt_state, x, y, key, *, epochs: int,
               batch_size: int | None, method: str):
    """The uncompiled body of :func:`fit`: ``(params, opt_state, losses[epochs])``.

    Pure and traceable, so it can be ``jit``-ed, ``vmap``-ed (sweeps) or
    ``scan``-ed further. ``key`` may be None for a full-batch, key-free model.
    """
    step = _step_fn(model, loss, optimizer, method)
    n = x.shape[0]

    def full_batch_epoch(carry, k):
        params, opt_state = carry
        params, opt_state, value = step(params, opt_state, x, y, key=k)
        return (params, opt_state), value

    def minibatch_epoch(carry, k):
        k_perm, k_steps = jax.random.split(k)
        nb = n // batch_size
        idx = jax.random.permutation(k_perm, n)[: nb * batch_size].reshape(nb, batch_size)
        step_keys = jax.random.split(k_steps, nb) if model.needs_key else None

        def one_batch(carry, inputs):
            params, opt_state = carry
            i, sk = inputs
            params, opt_state, value = step(params, opt_state, x[i], y[i], key=sk)
            return (params, opt_state), value

        carry, values = jax.lax.scan(one_batch, carry, (idx, step_keys))
        return carry, jnp.mean(values)

    body = full_batch_epoch if batch_size is None else minibatch_epoch
    keys = _epoch_keys(key, epochs)
    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), keys, length=epochs)
    return params, opt_state, losses


@partial(jax.jit, static_argnames=("model", "loss", "optimizer", "epochs", "batch_size", "method"))
def _compiled_run(params, opt_state, x, y, key, *, model, loss, optimizer, epochs, batch_size, method):
    return run_epochs(model, loss, optimizer, params, opt_state, x, y, key,
                      epochs=epochs, batch_size=batch_size, method=method)


def validate_fit_args(model, x, y, *, epochs, batch_size, key, where="fit"):
    """Raise clear errors for bad ``fit`` arguments (shared with sweeps)."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{where}: epochs must be a positive int, got {epochs!r}")
    n = jnp.shape(x)[0] if jnp.ndim(x) else 0
    if jnp.shape(y)[:1] != (n,):
        raise ValueError(f"{where}: x has {n} examples (shape {jnp.shape(x)}) but y has shape "
                         f"{jnp.shape(y)}; their first axes must match")
    if batch_size is not None:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
            raise ValueError(f"{where}: batch_size must be an int in [1, {n}] (the number of "
                             f"examples) or None for full batch, got {batch_size!r}")
        if key is None:
            raise ValueError(f"{where}: minibatches are reshuffled every epoch from the key; "
                             f"pass key=jax.random.key(0)")
    require_key(model, key, where)


def fit(model: Layer, loss: Loss, optimizer, params, x, y, *, epochs: int,
        batch_size: int | None = None, key=None, opt_state=None, method: str = "manual"):
    """Train for ``epochs`` epochs in one compiled call.

    Args:
      model, loss, optimizer: a Layer, a Loss and an ``(init, update)`` optimizer.
      params: initial params (e.g. ``model.init(key, x.shape[1:])``).
      x, y: the whole training set, batch-major.
      epochs: number of passes over the data (static: a new value recompiles).
      batch_size: ``None`` for full-batch gradient descent; otherwise minibatches
        reshuffled every epoch, the last partial batch dropped.
      key: PRNG key; required for minibatches and for random layers (Dropout).
      opt_state: resume from this optimizer state (default ``optimizer.init(params)``).
      method: ``"manual"`` or ``"autodiff"``.

    Returns:
      ``(params, opt_state, history)`` where ``history["loss"]`` is a NumPy array
      of shape ``(epochs,)``: the mean training loss of each epoch, measured
      during the epoch (before each step's update).
    """
    check_method(method)
    validate_fit_args(model, x, y, epochs=epochs, batch_size=batch_size, key=key)
    if opt_state is None:
        opt_state = optimizer.init(params)
    params, opt_state, losses = _compiled_run(
        params, opt_state, x, y, key, model=model, loss=loss, optimizer=optimizer,
        epochs=epochs, batch_size=batch_size, method=method)
    return params, opt_state, {"loss": np.asarray(losses)}
