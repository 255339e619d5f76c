"""Inference: ``evaluate`` and ``predict`` (``key=None``: no dropout, running statistics).

``evaluate(net, loss, params, x, y)`` -> ``{"loss": 0.12, "accuracy": 0.97}``: the
metrics (:mod:`fnnet.metrics`) of ONE compiled forward pass over the whole set.
``predict(net, params, x, batch_size=...)`` -> the outputs, in batches inside one
compiled call. Both are cached per model structure (:mod:`fnnet.structure`), loss,
metrics and shapes; a model with layer state (BatchNorm) needs ``state=``.

:func:`metric_values` is the traceable core that ``evaluate`` and the compiled
training loop (:mod:`fnnet.loop`, its per-epoch metrics) share.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .core import Layer, Loss, forward
from .metrics import METRICS, check_metrics, metric_function, metric_name
from .structure import keyed
from .validation import check_data, check_inference_state, is_tuple_input, stateful

__all__ = ["evaluate", "predict", "metric_values", "infer"]


def infer(model: Layer, params, x, state=None):
    """``model``'s output on ``x`` in inference mode (``key=None``), with its layer state."""
    if stateful(model):
        return forward(model, params, x, key=None, state=state)[0]
    return model.fwd(params, x)[0]


def metric_values(model: Layer, loss: Loss, params, x, y, metrics, *, state=None) -> dict:
    """``{name: scalar}`` for ``metrics`` from ONE inference forward pass (traceable)."""
    logits = infer(model, params, x, state)
    out = {}
    for m in metrics:
        m = getattr(m, "obj", m)    # a structurally keyed function (fnnet.structure.Keyed)
        out[metric_name(m)] = (loss.fwd(logits, y)[0] if m == "loss"
                               else jnp.asarray(metric_function(m)(logits, y)))
    return out


@partial(jax.jit, static_argnames=("model", "loss", "metrics"))
def _evaluate(params, state, x, y, *, model, loss, metrics):
    return metric_values(model.obj, loss.obj, params, x, y, metrics, state=state)


def evaluate(model: Layer, loss: Loss, params, x, y, *, metrics=METRICS, state=None) -> dict:
    """Metrics of ``params`` on ``(x, y)`` in inference mode, as Python floats.

    ``evaluate(net, loss, params, x_test, y_test)`` -> ``{"loss": 0.12, "accuracy": 0.97}``.
    One compiled forward pass over the whole set (cached per model structure,
    loss, metrics and shapes). A model with layer state needs ``state=``.
    """
    metrics = check_metrics(metrics, "evaluate")
    check_data(x, y, "evaluate")
    check_inference_state(model, state, "evaluate")
    from .data_checks import check_dataset    # NaN x, ids and labels out of range: loud

    check_dataset("evaluate", model, loss, params, x, y, state=state)
    out = _evaluate(params, state if stateful(model) else None, x, y,
                    model=keyed(model), loss=keyed(loss),
                    metrics=tuple(keyed(m) if callable(m) else m for m in metrics))
    return {k: float(v) for k, v in out.items()}


@partial(jax.jit, static_argnames=("model", "batch_size"))
def _predict(params, state, x, *, model, batch_size):
    model = model.obj
    if batch_size is None:
        return infer(model, params, x, state)
    n = jax.tree.leaves(x)[0].shape[0]          # x: an array or a tuple input
    nb = -(-n // batch_size)
    pad = nb * batch_size - n

    def batches(a):
        a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        return a.reshape(nb, batch_size, *a.shape[1:])

    out = jax.lax.map(lambda b: infer(model, params, b, state), jax.tree.map(batches, x))
    return out.reshape(nb * batch_size, *out.shape[2:])[:n]


def predict(model: Layer, params, x, *, batch_size: int | None = None, state=None) -> jax.Array:
    """The model's outputs on ``x`` in inference mode (``key=None``).

    ``batch_size`` bounds memory: ``x`` is zero-padded to a multiple of it, run in
    batches with ``lax.map`` inside one compiled call, and the padding is cut off
    (each example's output depends only on that example in inference mode). A
    model with layer state needs ``state=``.
    """
    if isinstance(batch_size, np.integer):
        batch_size = int(batch_size)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"predict: batch_size must be a positive int or None, got {batch_size!r}")
    check_data(x, x[0] if is_tuple_input(x) else x, "predict")
    check_inference_state(model, state, "predict")
    return _predict(params, state if stateful(model) else None, x,
                    model=keyed(model), batch_size=batch_size)
