"""Metrics, ``evaluate`` and ``predict``: inference-mode helpers (``key=None``, no dropout).

A metric is a name in :data:`METRICS`:

* ``"loss"``: the training loss, ``loss.fwd(model(x), y)`` (a mean over the batch);
* ``"accuracy"``: the fraction of correct predictions. Logits of shape ``(n, 1)``
  (or ``(n,)``) are one sigmoid output: predicted class ``logit > 0``, true class
  ``y > 0.5``. Logits of shape ``(n, k)``, ``k > 1``: predicted class ``argmax``,
  true class the integer label ``y`` of shape ``(n,)`` or ``argmax`` of a one-hot /
  probability target of shape ``(n, k)``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .core import Layer, Loss

__all__ = ["METRICS", "accuracy", "evaluate", "predict", "check_metrics", "metric_values"]

METRICS = ("loss", "accuracy")


def accuracy(logits, y) -> jax.Array:
    """Fraction of examples whose predicted class matches ``y`` (see the module doc)."""
    logits = jnp.asarray(logits)
    y = jnp.asarray(y)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        if y.shape != logits.shape:
            raise ValueError(f"accuracy: for one sigmoid output, labels must have the logits' "
                             f"shape {logits.shape}, got {y.shape}")
        return jnp.mean((logits > 0) == (y > 0.5))
    pred = jnp.argmax(logits, axis=-1)
    if y.shape == logits.shape:
        y = jnp.argmax(y, axis=-1)
    elif y.shape != logits.shape[:-1]:
        raise ValueError(f"accuracy: labels must be integers of shape {logits.shape[:-1]} or "
                         f"one-hot of shape {logits.shape}, got {y.shape}")
    return jnp.mean(pred == y)


def check_metrics(metrics, where: str = "fit") -> tuple:
    """Return ``metrics`` as a tuple of known names, or raise ``ValueError``."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"{where}: unknown metric {m!r}; expected names from {METRICS}")
    return metrics


def metric_values(model: Layer, loss: Loss, params, x, y, metrics) -> dict:
    """``{name: scalar}`` for ``metrics`` from ONE inference forward pass (traceable)."""
    logits = model.fwd(params, x)[0]
    out = {}
    for m in metrics:
        out[m] = loss.fwd(logits, y)[0] if m == "loss" else accuracy(logits, y)
    return out


@partial(jax.jit, static_argnames=("model", "loss", "metrics"))
def _evaluate(params, x, y, *, model, loss, metrics):
    return metric_values(model, loss, params, x, y, metrics)


def evaluate(model: Layer, loss: Loss, params, x, y, *, metrics=METRICS) -> dict:
    """Metrics of ``params`` on ``(x, y)`` in inference mode, as Python floats.

    ``evaluate(net, loss, params, x_test, y_test)`` -> ``{"loss": 0.12, "accuracy": 0.97}``.
    One compiled forward pass over the whole set (cached per model, loss, metrics
    and shapes).
    """
    metrics = check_metrics(metrics, "evaluate")
    out = _evaluate(params, x, y, model=model, loss=loss, metrics=metrics)
    return {k: float(v) for k, v in out.items()}


@partial(jax.jit, static_argnames=("model", "batch_size"))
def _predict(params, x, *, model, batch_size):
    if batch_size is None:
        return model.fwd(params, x)[0]
    n = x.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    out = jax.lax.map(lambda b: model.fwd(params, b)[0], xp.reshape(nb, batch_size, *x.shape[1:]))
    return out.reshape(nb * batch_size, *out.shape[2:])[:n]


def predict(model: Layer, params, x, *, batch_size: int | None = None) -> jax.Array:
    """The model's outputs on ``x`` in inference mode (``key=None``).

    ``batch_size`` bounds memory: ``x`` is zero-padded to a multiple of it, run in
    batches with ``lax.map`` inside one compiled call, and the padding is cut off
    (each example's output depends only on that example in inference mode).
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"predict: batch_size must be a positive int or None, got {batch_size!r}")
    return _predict(params, x, model=model, batch_size=batch_size)
