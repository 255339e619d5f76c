"""Metrics, ``evaluate`` and ``predict``: inference-mode helpers (``key=None``, no dropout).

A metric is a name, or a function ``f(pred, y) -> scalar`` (traceable: it runs
inside the compiled ``fit``/``evaluate``; recorded under ``f.__name__``, or
``f.fnnet_name`` if set; a lambda needs a name, see :func:`named_metric`).
``pred`` is the model's output (logits for classifiers). The names
(:data:`REGISTRY`, plus ``"loss"`` and ``"top_K_accuracy"`` for any ``K``):

=====================  =======================================================================
name                   value
=====================  =======================================================================
``"loss"``             the training loss, ``loss.fwd(model(x), y)`` (a mean over the batch)
``"accuracy"``         fraction of correct predictions. Logits ``(n, 1)`` (or ``(n,)``): one
                       sigmoid (or hinge) output, predicted class ``logit > 0``, true class
                       ``y > 0.5`` (so 0/1 and -1/+1 labels both work). Logits ``(..., k)``,
                       ``k > 1``: ``argmax``, against integer labels ``(...)`` or ``argmax`` of
                       a one-hot / probability target ``(..., k)``
``"top_K_accuracy"``   e.g. ``"top_5_accuracy"``: the true class is among the ``K`` highest
                       logits (counted as: fewer than ``K`` classes score strictly higher)
``"mse"``, ``"mae"``   mean squared / absolute error over all elements (regression; shapes
                       must match exactly)
``"precision"``        binary tasks: ``tp / (tp + fp)``; ``"recall"``: ``tp / (tp + fn)``;
``"recall"``, ``"f1"`` ``"f1"``: ``2 tp / (2 tp + fp + fn)``; 0 where the denominator is 0.
                       Positive means ``logit > 0`` / ``y > 0.5`` for one output, class 1 for
                       two-class logits ``(n, 2)``
=====================  =======================================================================

With a :class:`~fnnet.losses.MaskedTarget` (a ``masked`` loss's target),
``"accuracy"`` and ``"top_K_accuracy"`` count the unmasked positions only; the
other metrics refuse it. :data:`METRICS` is what ``evaluate`` reports by
default: ``("loss", "accuracy")``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._named import NamedFunction
from .core import Layer, Loss

__all__ = ["METRICS", "REGISTRY", "accuracy", "top_k_accuracy", "mse", "mae", "precision",
           "recall", "f1", "named_metric", "lookup", "evaluate", "predict", "check_metrics",
           "metric_values"]

METRICS = ("loss", "accuracy")


def _unmask(y, where: str, positions):
    """``(target, mask or None)``; a :class:`~fnnet.losses.MaskedTarget`'s mask must
    have the ``positions`` shape (one entry per prediction)."""
    from .losses import MaskedTarget

    if not isinstance(y, MaskedTarget):
        return jnp.asarray(y), None
    if positions is None:
        raise TypeError(f"{where}: masked targets (MaskedTarget) are supported by accuracy and "
                        f"top_K_accuracy; unwrap the target for this metric")
    mask = jnp.asarray(y.mask)
    if mask.shape != positions:
        raise ValueError(f"{where}: mask shape {mask.shape} must be {positions} (one entry per "
                         f"prediction)")
    return jnp.asarray(y.target), mask


def _mean(hits, mask):
    """Mean of ``hits``, over the unmasked entries when a mask is given (0 if none are)."""
    if mask is None:
        return jnp.mean(hits)
    m = mask.astype(jnp.float32)
    return jnp.sum(jnp.where(m != 0, m * hits, 0)) / jnp.maximum(jnp.sum(m), 1e-30)


def accuracy(logits, y) -> jax.Array:
    """Fraction of examples whose predicted class matches ``y`` (see the module doc);
    over the unmasked positions for a :class:`~fnnet.losses.MaskedTarget`."""
    logits = jnp.asarray(logits)
    one = logits.ndim == 1 or logits.shape[-1] == 1
    y, mask = _unmask(y, "accuracy", logits.shape if one else logits.shape[:-1])
    if one:
        if y.shape != logits.shape:
            raise ValueError(f"accuracy: for one sigmoid output, labels must have the logits' "
                             f"shape {logits.shape}, got {y.shape}")
        return _mean((logits > 0) == (y > 0.5), mask)
    pred = jnp.argmax(logits, axis=-1)
    if y.shape == logits.shape:
        y = jnp.argmax(y, axis=-1)
    elif y.shape != logits.shape[:-1]:
        raise ValueError(f"accuracy: labels must be integers of shape {logits.shape[:-1]} or "
                         f"one-hot of shape {logits.shape}, got {y.shape}")
    return _mean(pred == y, mask)


def _true_class(logits, y, where):
    """Integer true classes ``(...)`` for logits ``(..., k)``, ``k > 1``."""
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise ValueError(f"{where}: needs logits over k > 1 classes (..., k), got shape "
                         f"{logits.shape}")
    if y.shape == logits.shape:
        return jnp.argmax(y, axis=-1)
    if y.shape != logits.shape[:-1]:
        raise ValueError(f"{where}: labels must be integers of shape {logits.shape[:-1]} or "
                         f"one-hot of shape {logits.shape}, got {y.shape}")
    return y


def top_k_accuracy(logits, y, k: int = 5) -> jax.Array:
    """Fraction of examples whose true class is among the ``k`` highest logits: fewer than
    ``k`` classes score strictly higher than it (a tie counts in its favour)."""
    logits = jnp.asarray(logits)
    where = f"top_{k}_accuracy"
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"top_k_accuracy: k must be a positive int, got {k!r}")
    y, mask = _unmask(y, where, logits.shape[:-1])
    label = _true_class(logits, y, where)
    true_logit = jnp.take_along_axis(logits, label[..., None].astype(jnp.int32), axis=-1)
    higher = jnp.sum(logits > true_logit, axis=-1)
    return _mean(higher < k, mask)


def _same_shape(pred, y, where):
    pred, y = jnp.asarray(pred), _unmask(y, where, None)[0]
    if pred.shape != y.shape:
        raise ValueError(f"{where}: prediction shape {pred.shape} and target shape {y.shape} "
                         f"must match exactly (no broadcasting); for one output use y[:, None]")
    return pred, y.astype(jnp.result_type(pred))


def mse(pred, y) -> jax.Array:
    """Mean squared error over all elements."""
    pred, y = _same_shape(pred, y, "mse")
    return jnp.mean((pred - y) ** 2)


def mae(pred, y) -> jax.Array:
    """Mean absolute error over all elements."""
    pred, y = _same_shape(pred, y, "mae")
    return jnp.mean(jnp.abs(pred - y))


def _binary_counts(logits, y, where):
    """``(tp, fp, fn)`` of a binary task (see the module doc for what "positive" means)."""
    logits, y = jnp.asarray(logits), _unmask(y, where, None)[0]
    if logits.ndim == 1 or logits.shape[-1] == 1:
        if y.shape != logits.shape:
            raise ValueError(f"{where}: for one sigmoid output, labels must have the logits' "
                             f"shape {logits.shape}, got {y.shape}")
        pred, true = logits > 0, y > 0.5
    elif logits.shape[-1] == 2:
        pred, true = jnp.argmax(logits, axis=-1) == 1, _true_class(logits, y, where) == 1
    else:
        raise ValueError(f"{where}: a binary metric needs one output (n, 1) or two classes "
                         f"(n, 2), got logits of shape {logits.shape}; for k classes use "
                         f"accuracy or top_K_accuracy")
    f32 = jnp.float32
    return (jnp.sum(pred & true).astype(f32), jnp.sum(pred & ~true).astype(f32),
            jnp.sum(~pred & true).astype(f32))


def _ratio(num, den):
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)


def precision(logits, y) -> jax.Array:
    """Binary precision ``tp / (tp + fp)`` (0 if nothing is predicted positive)."""
    tp, fp, _ = _binary_counts(logits, y, "precision")
    return _ratio(tp, tp + fp)


def recall(logits, y) -> jax.Array:
    """Binary recall ``tp / (tp + fn)`` (0 if there are no positives)."""
    tp, _, fn = _binary_counts(logits, y, "recall")
    return _ratio(tp, tp + fn)


def f1(logits, y) -> jax.Array:
    """Binary F1 ``2 tp / (2 tp + fp + fn)``, the harmonic mean of precision and recall."""
    tp, fp, fn = _binary_counts(logits, y, "f1")
    return _ratio(2 * tp, 2 * tp + fp + fn)


REGISTRY = {"accuracy": accuracy, "mse": mse, "mae": mae, "precision": precision,
            "recall": recall, "f1": f1}


class _TopK:
    """``top_K_accuracy`` as a metric function (equal for equal ``k``)."""

    def __init__(self, k):
        self.k, self.fnnet_name = k, f"top_{k}_accuracy"

    def __call__(self, logits, y):
        return top_k_accuracy(logits, y, self.k)

    def __eq__(self, other):
        return type(other) is _TopK and other.k == self.k

    def __hash__(self):
        return hash(("top_k_accuracy", self.k))


def lookup(name: str):
    """The metric function registered under ``name`` (or ``top_K_accuracy``), else None."""
    if name in REGISTRY:
        return REGISTRY[name]
    parts = name.split("_") if isinstance(name, str) else ()
    if (len(parts) == 3 and parts[0] == "top" and parts[2] == "accuracy" and parts[1].isdigit()
            and int(parts[1]) >= 1 and parts[1] == str(int(parts[1]))):
        return _TopK(int(parts[1]))
    return None


def named_metric(name: str, f):
    """``f(pred, y) -> scalar`` recorded under ``name`` (e.g. for a lambda)."""
    if not isinstance(name, str) or not name or name == "loss" or lookup(name) is not None:
        raise ValueError(f"named_metric: name must be a new non-empty string (not 'loss' or a "
                         f"built-in metric name), got {name!r}")
    if not callable(f):
        raise TypeError(f"named_metric({name!r}): f must be a function (pred, y) -> scalar")
    return NamedFunction(name, f)


def metric_name(metric) -> str:
    """The history/record name of a metric: the name itself, or a function's name."""
    if isinstance(metric, str):
        return metric
    return getattr(metric, "fnnet_name", None) or getattr(metric, "__name__", "metric")


def metric_function(metric):
    """``f(logits, y) -> scalar`` for a metric name other than ``"loss"``, or a callable."""
    if callable(metric):
        return metric
    return lookup(metric)


def check_metrics(metrics, where: str = "fit") -> tuple:
    """Return ``metrics`` as a tuple of known names and functions, or raise ``ValueError``.

    A metric is a name from :data:`METRICS` or a function ``(logits, y) -> scalar``
    (recorded under its ``__name__``, or ``fnnet_name`` if set).
    """
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    metrics = tuple(metrics)
    names = []
    for m in metrics:
        if not callable(m) and m != "loss" and lookup(m) is None:
            raise ValueError(f"{where}: unknown metric {m!r}; expected 'loss', one of "
                             f"{tuple(REGISTRY)}, 'top_K_accuracy' (e.g. 'top_5_accuracy') or "
                             f"a function (pred, y) -> scalar")
        if callable(m) and metric_name(m) in ("loss", "<lambda>", *REGISTRY):
            raise ValueError(f"{where}: a metric function needs its own name, not "
                             f"{metric_name(m)!r}; use def, or "
                             f"fn.metrics.named_metric('my_metric', f)")
        names.append(metric_name(m))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: two metrics are named {dup[0]!r}; give each function its "
                         f"own name (f.__name__ or f.fnnet_name)")
    return metrics


def inference(model: Layer, params, x, state=None):
    """``model``'s output on ``x`` in inference mode (``key=None``), with its layer state."""
    if getattr(model, "has_state", False):
        from .core import forward

        return forward(model, params, x, key=None, state=state)[0]
    return model.fwd(params, x)[0]


def metric_values(model: Layer, loss: Loss, params, x, y, metrics, *, state=None) -> dict:
    """``{name: scalar}`` for ``metrics`` from ONE inference forward pass (traceable)."""
    logits = inference(model, params, x, state)
    out = {}
    for m in metrics:
        m = getattr(m, "obj", m)    # a structurally keyed function (fnnet.structure.Keyed)
        out[metric_name(m)] = (loss.fwd(logits, y)[0] if m == "loss"
                               else jnp.asarray(metric_function(m)(logits, y)))
    return out


@partial(jax.jit, static_argnames=("model", "loss", "metrics"))
def _evaluate(params, state, x, y, *, model, loss, metrics):
    return metric_values(model.obj, loss.obj, params, x, y, metrics, state=state)


def _check_inference_data(x, where: str, y=None):
    from .train import check_data

    from .train import is_tuple_input

    check_data(x, (x[0] if is_tuple_input(x) else x) if y is None else y, where)


def _check_state(model, state, where: str):
    if getattr(model, "has_state", False) and state is None:
        raise ValueError(f"{where}: {model.name} has layer state (BatchNorm running statistics) "
                         f"used in inference; pass state= (the state returned by fit or "
                         f"train_step, or fn.init_state)")


def evaluate(model: Layer, loss: Loss, params, x, y, *, metrics=METRICS, state=None) -> dict:
    """Metrics of ``params`` on ``(x, y)`` in inference mode, as Python floats.

    ``evaluate(net, loss, params, x_test, y_test)`` -> ``{"loss": 0.12, "accuracy": 0.97}``.
    One compiled forward pass over the whole set (cached per model structure,
    loss, metrics and shapes). A model with layer state needs ``state=``.
    """
    from .structure import keyed

    metrics = check_metrics(metrics, "evaluate")
    _check_inference_data(x, "evaluate", y)
    _check_state(model, state, "evaluate")
    from .data_checks import check_dataset    # NaN x, ids and labels out of range: loud

    check_dataset("evaluate", model, loss, params, x, y, state=state)
    out = _evaluate(params, state if getattr(model, "has_state", False) else None, x, y,
                    model=keyed(model), loss=keyed(loss),
                    metrics=tuple(keyed(m) if callable(m) else m for m in metrics))
    return {k: float(v) for k, v in out.items()}


@partial(jax.jit, static_argnames=("model", "batch_size"))
def _predict(params, state, x, *, model, batch_size):
    model = model.obj
    if batch_size is None:
        return inference(model, params, x, state)
    n = jax.tree.leaves(x)[0].shape[0]          # x: an array or a tuple input
    nb = -(-n // batch_size)
    pad = nb * batch_size - n

    def batches(a):
        a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        return a.reshape(nb, batch_size, *a.shape[1:])

    out = jax.lax.map(lambda b: inference(model, params, b, state), jax.tree.map(batches, x))
    return out.reshape(nb * batch_size, *out.shape[2:])[:n]


def predict(model: Layer, params, x, *, batch_size: int | None = None, state=None) -> jax.Array:
    """The model's outputs on ``x`` in inference mode (``key=None``).

    ``batch_size`` bounds memory: ``x`` is zero-padded to a multiple of it, run in
    batches with ``lax.map`` inside one compiled call, and the padding is cut off
    (each example's output depends only on that example in inference mode). A
    model with layer state needs ``state=``.
    """
    from .structure import keyed

    if isinstance(batch_size, np.integer):
        batch_size = int(batch_size)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"predict: batch_size must be a positive int or None, got {batch_size!r}")
    _check_inference_data(x, "predict")
    _check_state(model, state, "predict")
    return _predict(params, state if getattr(model, "has_state", False) else None, x,
                    model=keyed(model), batch_size=batch_size)
