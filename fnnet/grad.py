"""``value_and_grad``: the loss of a model and its gradient w.r.t. the params.

``method="manual"`` (default) runs ``model.fwd`` then ``loss.fwd``, seeds the
backward with ``1.0`` and runs ``loss.bwd`` then ``model.bwd``: the chain rule
as hand-written VJPs, no autodiff anywhere. ``method="autodiff"`` is
``jax.value_and_grad`` of the very same forward (same key, hence the same dropout
masks): the referee the manual path is checked against.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from .core import Layer, Loss, forward
from .regularizers import add_regularizer
from .state import update_state
from .walk import output_layer

METHODS = ("manual", "autodiff")


def check_method(method: str) -> str:
    """Raise a clear ``ValueError`` for an unknown ``method=``."""
    if method not in METHODS:
        raise ValueError(f"unknown method={method!r}; expected one of {METHODS}")
    return method


def require_key(model: Layer, key, where: str):
    """Raise if ``model`` is random in training (e.g. contains Dropout) and ``key`` is None."""
    if key is None and getattr(model, "needs_key", False):
        raise ValueError(
            f"{where}: {model.name} needs a PRNG key in training (it contains a layer "
            f"that needs one: Dropout draws masks, BatchNorm trains on batch statistics); "
            f"pass key=jax.random.key(0), or call fn.apply(model, params, x) for inference."
        )


# Losses that take logits, and the output layers that turn logits into probabilities.
LOGIT_LOSSES = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "kl_divergence")
PROBABILITY_LAYERS = ("Softmax", "Sigmoid")


def logits_for_loss(model, loss, where: str):
    """Warn (``UserWarning``) when a model ending in Softmax/Sigmoid (its output layer,
    :func:`fnnet.walk.output_layer`) feeds a loss that takes logits: the loss would
    apply softmax/sigmoid a second time, training runs but learns the wrong thing,
    silently."""
    base = getattr(loss.fwd, "base", None) or getattr(loss, "name", "")
    last = output_layer(model)
    if any(n in base for n in LOGIT_LOSSES) and getattr(last, "name", "") in PROBABILITY_LAYERS:
        warnings.warn(
            f"{where}: {model.name} ends in {last.name} (probabilities) but {loss.name} takes "
            f"logits and applies the softmax/sigmoid itself, so it would be applied twice. "
            f"Drop the final {last.name} for training (apply it at prediction time).",
            UserWarning, stacklevel=3)


def loss_fn(model: Layer, loss: Loss):
    """``f(params, x, y, *, key=None, state=None) -> scalar``: the forward only."""

    def f(params, x, y, *, key=None, state=None):
        return loss.fwd(forward(model, params, x, key=key, state=state)[0], y)[0]

    return f


def _next_state(model, state, key, res):
    """The state after this forward: updated in training (a key), unchanged in inference."""
    return state if key is None else update_state(model, state, res)


def value_and_grad(model: Layer, loss: Loss, *, method: str = "manual", regularizer=None):
    """Return ``f(params, x, y, *, key=None, state=None) -> (value, grads)``.

    Args:
      model: a :class:`~fnnet.Layer` (usually ``serial(...)``).
      loss: a :class:`~fnnet.Loss`, applied to the model's output and ``y``.
      method: ``"manual"`` (hand-written backward) or ``"autodiff"``
        (``jax.value_and_grad`` of the same forward).

    ``grads`` has the tree structure and dtypes of ``params``; ``value`` is the
    scalar loss. A model containing a random layer requires ``key`` (the same key
    gives the same masks on both paths).

    Layer state (:mod:`fnnet.state`): with ``state=`` given, ``f`` returns
    ``(value, grads, new_state)``; the new state is derived from the training
    forward's residuals (with ``key=None``, inference mode, it is unchanged).
    Without ``state``, a stateful model still trains on batch statistics and
    ``f`` returns ``(value, grads)``.

    ``regularizer`` (e.g. ``fn.l2(1e-4)``, :mod:`fnnet.regularizers`): its value
    is added to the loss; the manual path adds its hand-written gradient, the
    autodiff path differentiates it.
    """
    check_method(method)
    where = f"value_and_grad(method={method!r})"
    logits_for_loss(model, loss, where)

    if method == "manual":

        def f(params, x, y, *, key=None, state=None):
            require_key(model, key, where)
            out, res = forward(model, params, x, key=key, state=state)
            value, lres = loss.fwd(out, y)
            dout = loss.bwd(lres, jnp.ones((), value.dtype))
            grads, _ = model.bwd(res, dout)
            value, grads = add_regularizer(regularizer, params, value, grads)
            if state is None:
                return value, grads
            return value, grads, _next_state(model, state, key, res)

        return f

    def scalar(params, x, y, key, state):
        out, res = forward(model, params, x, key=key, state=state)
        value = loss.fwd(out, y)[0]
        return (value if regularizer is None else value + regularizer.value(params)), res

    def g(params, x, y, *, key=None, state=None):
        require_key(model, key, where)
        (value, res), grads = jax.value_and_grad(scalar, has_aux=True)(params, x, y, key, state)
        if state is None:
            return value, grads
        return value, grads, _next_state(model, state, key, res)

    return g
