"""``value_and_grad``: the loss of a model and its gradient w.r.t. the params.

``method="manual"`` (default) runs ``model.fwd`` then ``loss.fwd``, seeds the
backward with ``1.0`` and runs ``loss.bwd`` then ``model.bwd``: the chain rule
as hand-written VJPs, no autodiff anywhere. ``method="autodiff"`` is
``jax.value_and_grad`` of the very same forward (same key, hence the same dropout
masks): the referee the manual path is checked against.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .core import Layer, Loss

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
            f"{where}: {model.name} needs a PRNG key in training (it contains a random "
            f"layer such as Dropout); pass key=jax.random.key(0), or call "
            f"fn.apply(model, params, x) for inference."
        )


def loss_fn(model: Layer, loss: Loss):
    """``f(params, x, y, *, key=None) -> scalar``: the forward only."""

    def f(params, x, y, *, key=None):
        return loss.fwd(model.fwd(params, x, key=key)[0], y)[0]

    return f


def value_and_grad(model: Layer, loss: Loss, *, method: str = "manual"):
    """Return ``f(params, x, y, *, key=None) -> (value, grads)``.

    Args:
      model: a :class:`~fnnet.Layer` (usually ``serial(...)``).
      loss: a :class:`~fnnet.Loss`, applied to the model's output and ``y``.
      method: ``"manual"`` (hand-written backward) or ``"autodiff"``
        (``jax.value_and_grad`` of the same forward).

    ``grads`` has the tree structure and dtypes of ``params``; ``value`` is the
    scalar loss. A model containing a random layer requires ``key`` (the same key
    gives the same masks on both paths).
    """
    check_method(method)
    where = f"value_and_grad(method={method!r})"

    if method == "manual":

        def f(params, x, y, *, key=None):
            require_key(model, key, where)
            out, res = model.fwd(params, x, key=key)
            value, lres = loss.fwd(out, y)
            dout = loss.bwd(lres, jnp.ones((), value.dtype))
            grads, _ = model.bwd(res, dout)
            return value, grads

        return f

    forward = loss_fn(model, loss)

    def g(params, x, y, *, key=None):
        require_key(model, key, where)
        return jax.value_and_grad(lambda p: forward(p, x, y, key=key))(params)

    return g
