"""Losses: ``Loss(fwd, bwd)`` with ``fwd(pred, target) -> (scalar, residuals)`` and
``bwd(residuals, g) -> dpred``. Every loss is a mean, so its gradient carries ``1/N``.

Losses with default settings are values (``fn.losses.huber``); a loss with other
settings comes from its ``*_with`` constructor (``fn.losses.huber_with(delta=2.0)``).
Two calls with equal settings return EQUAL losses, so a compiled ``train_step`` or
``fit`` is reused rather than recompiled.

Per position ``i`` (an element for elementwise losses; a row of the last axis, the
classes, for ``softmax_cross_entropy`` and ``kl_divergence``), ``d = p - t``:

===================================  ==============================================  ==================================  =====================================
loss                                 loss at one position                            d loss / d pred                     equals (PyTorch, ``reduction="mean"``)
===================================  ==============================================  ==================================  =====================================
mean_squared_error                   ``d^2``                                         ``2 d``                             ``nn.MSELoss``
mean_absolute_error                  ``|d|``                                         ``sign(d)`` (0 at ``d = 0``)        ``nn.L1Loss``
huber / huber_with(delta)            ``d^2/2`` if ``|d| <= delta``,                  ``clip(d, -delta, delta)``          ``nn.HuberLoss(delta=delta)``
                                     else ``delta (|d| - delta/2)``
hinge (targets ``-1``/``+1``)        ``max(0, 1 - t z)``                             ``-t`` if ``t z < 1``, else 0       ``F.relu(1 - t * z).mean()``
sigmoid_binary_cross_entropy         ``a softplus(z) - b z``, ``b = w t``,           ``a sigmoid(z) - b``                ``nn.BCEWithLogitsLoss(pos_weight=w)``
/ ..._with(pos_weight=w)             ``a = 1 + (w - 1) t`` (``w = 1`` by default)
softmax_cross_entropy                ``-sum_k c_k log_softmax(z)_k``,                ``softmax(z) sum_k c_k - c``        ``nn.CrossEntropyLoss(weight=w,
/ ..._with(label_smoothing=e,        ``c_k = w_k q_k``, ``q = (1 - e) t + e / K``                                        label_smoothing=e)``
weights=w, ignore_index=None)        (``t``: one-hot of the label, or the target row)
kl_divergence                        ``sum_k q_k (log q_k - log_softmax(z)_k)``,     ``softmax(z) sum_k q_k - q``        ``nn.KLDivLoss(reduction="batchmean")``
                                     ``0 log 0 = 0``                                                                     of ``log_softmax(z)``
===================================  ==============================================  ==================================  =====================================

The value is ``sum_i loss_i / N``. ``N`` is the number of positions, except for
``softmax_cross_entropy`` with class ``weights`` and integer labels, where (as in
PyTorch) ``N = sum_i w[label_i]``, the summed weight of the targets. With
probability targets PyTorch divides by the number of positions, and so does fnnet.
``kl_divergence`` divides by the number of rows (all axes but the last), which
is PyTorch's ``batchmean`` for ``(batch, classes)`` inputs.

**Backward, fused.** ``fwd``'s residual is the finished gradient ``dloss/dpred / N``
(one array, formed in the same XLA fusion as the forward), and ``bwd`` scales it
by the seed ``g``. ``jax.grad`` of the value takes the same one-sided derivatives
at kinks: 0 for ``|d|`` at ``d = 0`` and for the hinge at ``t z = 1`` (the
forwards are written as ``d * sign(d)`` and ``relu(1 - t z)``; ``jnp.abs`` would
give 1). Classification losses take **logits** ``z``, never probabilities, and are
written in log-sigmoid / log-softmax form, finite for logits of any magnitude.

**Shapes.** ``pred`` and ``target`` shapes must match exactly (no silent
broadcasting); ``softmax_cross_entropy`` also takes integer labels shaped like the
logits without the class axis: ``(n,)`` for ``(n, k)``, ``(batch, time)`` for
``(batch, time, k)`` (the mean over all batch x time positions). An empty batch
is an error.

**Masks.** ``masked(loss)`` takes the target as ``MaskedTarget(target, mask)`` (a
pytree that ``train_step``, ``fit`` and ``evaluate`` carry like one array; a plain
pair ``(target, mask)`` works in direct calls) and averages over the unmasked
positions only: ``sum_i m_i loss_i / sum_i m_i`` (times
``w[label_i]`` in the denominator for weighted cross-entropy). ``mask`` is boolean
(or 0/1; other non-negative numbers weight positions) with the shape of the
positions: the logits' shape without the class axis for the two softmax losses;
``pred``'s shape, or ``pred``'s shape without the last axis (one entry per row,
shared by its elements), for elementwise losses. Targets at masked positions are
never read (padding there may hold anything, even an invalid label). A batch with
every position masked has loss 0 and gradient 0. ``softmax_cross_entropy_with(
ignore_index=i)`` masks the positions whose label is ``i`` (PyTorch's
``ignore_index``; fnnet has no default, so PyTorch's ``-100`` is an invalid label).

**Invalid targets are loud, never dropped.** An integer label outside ``[0, K)``
(or a hinge target other than -1 and +1) at an unmasked position:

* when the labels are concrete (an eager call, or constants inside ``jit``): a
  ``ValueError`` that names the loss, the allowed range and the values found;
* when they are traced (inside ``train_step``, ``fit``, ``jit``): the loss of that
  whole batch is NaN, and so is every entry of its hand-written gradient (PyTorch
  raises; ``fit(debug=True)`` stops there). It is the denominator that becomes
  NaN, so ``jax.grad`` of the value is NaN as well (in every row with a valid
  label; XLA folds ``0 * NaN`` for the invalid row's all-zero one-hot to 0).

**Names.** ``loss.name`` names a loss in error messages and reports;
``named_loss(name, fwd, bwd)`` gives a hand-made loss a readable name.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from ._named import NamedFunction
from .structure import Recorded
from .core import Loss

__all__ = ["mean_squared_error", "mean_absolute_error", "huber", "hinge",
           "sigmoid_binary_cross_entropy", "softmax_cross_entropy", "kl_divergence",
           "huber_with", "sigmoid_binary_cross_entropy_with", "softmax_cross_entropy_with",
           "masked", "MaskedTarget", "named_loss"]


class _Parts(NamedTuple):
    """A loss before its mean: everything :func:`_reduce` needs."""

    loss: jax.Array                 # per position
    grad: jax.Array                 # d loss_i / d pred, shaped like pred
    denom: jax.Array | None = None  # per-position weight of the denominator (None: 1 each)
    bad: jax.Array | None = None    # per-position invalid target (poisons the batch)
    rule: str = ""                  # what a valid target is (for the ValueError)
    values: jax.Array | None = None  # the targets, to report the invalid ones
    keep: jax.Array | None = None   # positions a loss setting keeps (ignore_index)


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _fmt_settings(settings) -> str:
    def fmt(v):
        if isinstance(v, tuple):
            return f"[{len(v)} values]" if len(v) > 6 else "[" + ", ".join(f"{e:g}" for e in v) + "]"
        return f"{v:g}" if isinstance(v, float) else repr(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in settings)


class _LossFwd(Recorded):
    """The ``fwd`` of a built-in loss: ``parts`` (per-position values and gradients)
    followed by the (masked) mean. It is its constructor call (:class:`Recorded`):
    equal settings compare equal, so ``jit`` caches keyed on the loss are reused."""

    def __init__(self, base: str, parts: Callable, settings: tuple = (), masked: bool = False):
        self.base, self.parts, self.settings, self.masked = base, parts, settings, masked
        shown = tuple((k, v) for k, v in settings if v is not None)
        name = f"{base}({_fmt_settings(shown)})" if shown else base
        self.fnnet_name = f"masked({name})" if masked else name
        self.__doc__ = f"fnnet loss {self.fnnet_name}: (pred, target) -> (value, residuals)."

    def __repr__(self):
        return f"<fwd of {self.fnnet_name}>"

    def __call__(self, pred, target):
        name = self.fnnet_name
        mask = None
        if self.masked:
            if isinstance(target, MaskedTarget):
                target, mask = target.target, target.mask
            elif isinstance(target, (tuple, list)) and len(target) == 2:
                target, mask = target
            else:
                raise TypeError(f"{name}: the target must be MaskedTarget(target, mask) or a "
                                f"pair (target, mask), got {type(target).__name__}"
                                + (f" of shape {_checks._fmt(jnp.shape(target))}"
                                   if hasattr(target, "shape") else ""))
        if jnp.size(pred) == 0:
            raise ValueError(f"{name}: empty batch (prediction shape "
                             f"{_checks._fmt(jnp.shape(pred))}); a mean over no examples is "
                             f"undefined. Pass at least one example.")
        parts = self.parts(name, pred, target, **dict(self.settings))
        return _reduce(name, pred, parts, mask)


def _bwd(dpred, g):
    """Every built-in loss: the residual is the finished gradient, scaled by the seed."""
    return jnp.asarray(g, dpred.dtype) * dpred


def _make(base, parts, **settings) -> Loss:
    return Loss(_LossFwd(base, parts, tuple(settings.items())), _bwd)


def _expand_mask(name, mask, pos_shape, pred):
    """The mask as a float array of ``pos_shape``, checked (no silent broadcasting)."""
    mshape = jnp.shape(mask)
    dtype = jnp.result_type(mask)
    if not (jnp.issubdtype(dtype, jnp.bool_) or jnp.issubdtype(dtype, jnp.number)):
        raise TypeError(f"{name}: the mask must be boolean or numeric, got dtype {dtype}")
    if mshape == pos_shape:
        return jnp.asarray(mask).astype(pred.dtype)
    if pos_shape == jnp.shape(pred) and mshape == pos_shape[:-1] and len(pos_shape) >= 1:
        return jnp.broadcast_to(jnp.asarray(mask).astype(pred.dtype)[..., None], pos_shape)
    allowed = _checks._fmt(pos_shape) + (f" or {_checks._fmt(pos_shape[:-1])}"
                                         if pos_shape == jnp.shape(pred) and pos_shape else "")
    raise ValueError(f"{name}: mask shape {_checks._fmt(mshape)} does not fit prediction shape "
                     f"{_checks._fmt(jnp.shape(pred))}: it must be {allowed} (one entry per "
                     f"position{'' if pos_shape == jnp.shape(pred) else ': the logits shape without the class axis'}"
                     f"); fnnet never broadcasts a mask silently.")


def _raise_invalid(name, parts, bad):
    bad = np.asarray(bad)
    if not bad.any():
        return
    vals = np.asarray(parts.values)[bad]
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    shown = np.unique(vals)
    shown = ", ".join(f"{v:g}" for v in shown[:8]) + (", ..." if shown.size > 8 else "")
    raise ValueError(f"{name}: {parts.rule}; got {int(bad.sum())} invalid target(s), values "
                     f"{{{shown}}}, the first at index {first}. Fix the targets, or mask those "
                     f"positions (fn.losses.masked). Under jit such a batch gives a NaN loss and "
                     f"NaN gradients, never a silently smaller loss.")


def _reduce(name, pred, parts: _Parts, mask):
    """``value = sum_i m_i loss_i / sum_i m_i r_i`` and its finished gradient."""
    l, dl = parts.loss, parts.grad
    keep = parts.keep
    if mask is not None:
        m = _expand_mask(name, mask, l.shape, pred)
        keep = m if keep is None else m * keep.astype(m.dtype)
    r = parts.denom
    bad = parts.bad
    acc = jnp.promote_types(pred.dtype, jnp.float32)  # 16-bit: sums and counts in float32
    if keep is None:
        num = jnp.sum(l, dtype=acc)
        denom = jnp.asarray(l.size, acc) if r is None else jnp.sum(r, dtype=acc)
        scale = None
    else:
        keep = jnp.asarray(keep).astype(pred.dtype)
        on = keep != 0
        num = jnp.sum(jnp.where(on, keep * l, 0), dtype=acc)
        denom = jnp.sum(keep if r is None else jnp.where(on, keep * r, 0), dtype=acc)
        denom = jnp.where(denom > 0, denom, 1)  # every position masked: loss 0, gradient 0
        scale = keep
        if bad is not None:
            bad = bad & on
    if bad is not None:
        if not _is_traced(bad):
            _raise_invalid(name, parts, bad)
        denom = jnp.where(jnp.any(bad), jnp.nan, denom)
    if scale is not None:
        if scale.shape != dl.shape:  # class losses: one weight per row
            scale = scale[..., None]
        dl = jnp.where(scale != 0, scale * dl, 0)
    return (num / denom).astype(pred.dtype), (dl / denom).astype(pred.dtype)


def _targets(name, pred, target):
    _checks.floating(name, pred, "prediction/logits")
    _checks.same_shape(
        name, pred, target, "prediction", "target",
        hint="For a single output unit, reshape labels to (n, 1), e.g. y[:, None]."
        if jnp.ndim(target) == jnp.ndim(pred) - 1 else "",
    )
    return jnp.asarray(target).astype(jnp.result_type(pred))


# --- regression: squared, absolute, Huber -------------------------------------

def _mse_parts(name, pred, target):
    d = pred - _targets(name, pred, target)
    return _Parts(d * d, 2 * d)


def _mae_parts(name, pred, target):
    d = pred - _targets(name, pred, target)
    s = jnp.sign(d)  # |d| = d sign(d): jax.grad then gives sign(0) = 0 at the kink, as L1Loss
    return _Parts(d * s, s)


def _huber_parts(name, pred, target, delta):
    d = pred - _targets(name, pred, target)
    small = jnp.abs(d) <= delta
    return _Parts(jnp.where(small, 0.5 * d * d, delta * (jnp.abs(d) - 0.5 * delta)),
                  jnp.where(small, d, delta * jnp.sign(d)))


def _hinge_parts(name, pred, target):
    t = _targets(name, pred, target)
    margin = 1 - t * pred
    # relu: derivative 0 at the kink t z = 1 (the hand-written rule below agrees)
    return _Parts(jax.nn.relu(margin), jnp.where(margin > 0, -t, 0).astype(pred.dtype),
                  bad=(t != 1) & (t != -1), values=t,
                  rule="targets must be -1 or +1 (for 0/1 labels use 2 * y - 1)")


# --- sigmoid binary cross-entropy -----------------------------------------------

def _bce_parts(name, logits, target, pos_weight=None):
    t = _targets(name, logits, target)
    if pos_weight is not None:
        w = jnp.asarray(pos_weight, logits.dtype)
        if w.ndim and w.shape != logits.shape[-1:]:
            raise ValueError(f"{name}: pos_weight has {w.shape[0]} entries but the logits "
                             f"{_checks._fmt(logits.shape)} have {logits.shape[-1]} outputs on "
                             f"their last axis; give one weight per output, or a scalar.")
    # sigmoid(z) = where(z >= 0, 1, e) / (1 + e) with e = exp(-|z|), the exponential
    # softplus already computes (XLA shares it): no second exp, finite for any z.
    e = jnp.exp(-jnp.abs(logits))
    sig = jnp.where(logits >= 0, 1, e) / (1 + e)
    sp = jax.nn.softplus(logits)
    if pos_weight is None:
        return _Parts(sp - t * logits, sig - t)
    a, b = 1 + (w - 1) * t, w * t  # w t softplus(-z) + (1 - t) softplus(z) = a softplus(z) - b z
    return _Parts(a * sp - b * logits, a * sig - b)


# --- softmax cross-entropy and KL divergence ------------------------------------

def _sce_parts(name, logits, target, label_smoothing=0.0, weights=None, ignore_index=None):
    _checks.floating(name, logits, "logits")
    _checks.batched(name, logits, layout="(batch, classes)")
    k = logits.shape[-1]
    w = None
    if weights is not None:
        if len(weights) != k:
            raise ValueError(f"{name}: {len(weights)} class weights for logits with {k} classes "
                             f"(shape {_checks._fmt(logits.shape)}); give one weight per class.")
        w = jnp.asarray(weights, logits.dtype)
    dtype = jnp.result_type(target)
    logp = jax.nn.log_softmax(logits, axis=-1)
    extra = {}
    if jnp.ndim(target) == logits.ndim - 1 and jnp.issubdtype(dtype, jnp.integer):
        if jnp.shape(target) != logits.shape[:-1]:
            raise ValueError(f"{name}: integer labels shape {jnp.shape(target)} must be "
                             f"logits shape {logits.shape} without the class axis")
        labels = jnp.asarray(target)
        q = jax.nn.one_hot(labels, k, dtype=logits.dtype)  # all zeros for an invalid label
        extra = dict(bad=(labels < 0) | (labels >= k), values=labels,
                     rule=f"integer labels must be class indices in [0, {k}) for logits of shape "
                          f"{_checks._fmt(logits.shape)}")
        if ignore_index is not None:
            extra["keep"] = labels != ignore_index
        if w is not None:  # PyTorch: the mean divides by the summed weight of the targets
            extra["denom"] = jnp.take(w, jnp.clip(labels, 0, k - 1))
    elif jnp.ndim(target) == logits.ndim - 1:
        raise TypeError(f"{name}: labels of shape {jnp.shape(target)} must be integers "
                        f"(class indices), got dtype {dtype}")
    elif jnp.issubdtype(dtype, jnp.integer) and jnp.shape(target) != logits.shape:
        raise ValueError(f"{name}: integer labels have shape {_checks._fmt(jnp.shape(target))}; "
                         f"for logits {_checks._fmt(logits.shape)} class indices must be "
                         f"{_checks._fmt(logits.shape[:-1])} (a column (n, 1): "
                         f"y.reshape(-1)), or targets shaped like the logits.")
    else:
        if ignore_index is not None:
            raise TypeError(f"{name}: ignore_index needs integer labels, got targets of "
                            f"shape {_checks._fmt(jnp.shape(target))} shaped like the logits")
        q = _targets(name, logits, target)
    if label_smoothing:
        q = (1 - label_smoothing) * q + label_smoothing / k
    c = q if w is None else w * q
    if "bad" in extra and w is None:
        c_sum = jnp.ones((), logits.dtype)  # one-hot (smoothed): sums to 1 (invalid: NaN anyway)
    else:
        c_sum = jnp.sum(c, axis=-1, keepdims=True)
    if "bad" in extra:
        # integer labels: sum_k c_k logp_k = (1 - e) w_y logp_y + (e / K) sum_k w_k logp_k with
        # logp_y gathered, so the value holds no (n, K) product (XLA kept one alive beside
        # the gradient: the large MLP's step needed 1.33x autodiff's temp memory). An invalid
        # label reads a clipped index; its batch is NaN anyway.
        value = jnp.take_along_axis(logp, jnp.clip(labels, 0, k - 1)[..., None], -1)[..., 0]
        if w is not None:
            value = value * extra["denom"]
        if label_smoothing:
            value = (1 - label_smoothing) * value + label_smoothing / k * jnp.sum(
                logp if w is None else w * logp, axis=-1)
    else:
        value = jnp.sum(c * logp, axis=-1)
    # XLA fuses softmax(z) sum_k c_k - c with the forward's log-softmax (one exp pass)
    # and forms an integer label's one-hot inside that fusion.
    return _Parts(-value, jnp.exp(logp) * c_sum - c, **extra)


def _kl_parts(name, logits, target):
    _checks.floating(name, logits, "logits")
    _checks.batched(name, logits, layout="(batch, classes)")
    if jnp.issubdtype(jnp.result_type(target), jnp.integer):
        raise TypeError(f"{name}: the target must be probabilities shaped like the logits "
                        f"{_checks._fmt(logits.shape)}, got integer dtype "
                        f"{jnp.result_type(target)}; for class labels use softmax_cross_entropy "
                        f"(or one-hot them: jax.nn.one_hot(y, k)).")
    q = _targets(name, logits, target)
    logp = jax.nn.log_softmax(logits, axis=-1)
    entropy_term = jax.scipy.special.xlogy(q, q)  # 0 log 0 = 0
    return _Parts(jnp.sum(entropy_term - q * logp, axis=-1),
                  jnp.exp(logp) * jnp.sum(q, axis=-1, keepdims=True) - q)


# --- the losses ---------------------------------------------------------------

mean_squared_error = _make("mean_squared_error", _mse_parts)
mean_absolute_error = _make("mean_absolute_error", _mae_parts)
hinge = _make("hinge", _hinge_parts)
kl_divergence = _make("kl_divergence", _kl_parts)


def _number(where, what, value, *, low=None, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{where}: {what} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value <= low if low_open else value < low) or \
            high is not None and value >= high:
        rng = f"{'(' if low_open else '['}{low:g}, {'inf' if high is None else f'{high:g}'})"
        raise ValueError(f"{where}: {what} must be in {rng}, got {value!r}")
    return value


def _vector(where, what, value, *, positive: bool):
    """Concrete, finite, non-negative (or positive) numbers as a tuple of floats (hashable)."""
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise TypeError(f"{where}: {what} must be concrete numbers (a list or array), not a "
                        f"traced value; they are settings of the loss") from None
    if arr.ndim > 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0) or \
            (positive and np.any(arr == 0)):
        raise ValueError(f"{where}: {what} must be a scalar or a 1-d list of finite "
                         f"{'positive' if positive else 'non-negative'} numbers, got {value!r}")
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


def huber_with(delta: float = 1.0) -> Loss:
    """Huber loss with threshold ``delta > 0`` (``nn.HuberLoss(delta=delta)``): quadratic
    for ``|p - t| <= delta``, linear beyond."""
    delta = _number("huber_with", "delta", delta, low=0.0, low_open=True)
    return _make("huber", _huber_parts, delta=delta)


huber = huber_with(1.0)


def sigmoid_binary_cross_entropy_with(pos_weight=None) -> Loss:
    """Binary cross-entropy on logits with a positive-class weight
    (``nn.BCEWithLogitsLoss(pos_weight=pos_weight)``): a scalar, or one weight per
    output (the logits' last axis). ``pos_weight > 1`` raises recall."""
    if pos_weight is None:
        return sigmoid_binary_cross_entropy
    pos_weight = _vector("sigmoid_binary_cross_entropy_with", "pos_weight", pos_weight,
                         positive=False)
    return _make("sigmoid_binary_cross_entropy", _bce_parts, pos_weight=pos_weight)


sigmoid_binary_cross_entropy = _make("sigmoid_binary_cross_entropy", _bce_parts)


def softmax_cross_entropy_with(label_smoothing: float = 0.0, weights=None,
                               ignore_index: int | None = None) -> Loss:
    """Softmax cross-entropy on logits, as ``nn.CrossEntropyLoss(weight=weights,
    label_smoothing=label_smoothing, ignore_index=ignore_index)``.

    ``label_smoothing`` in ``[0, 1)`` mixes the target with the uniform distribution:
    ``q = (1 - e) t + e / K``. ``weights`` (one non-negative number per class) weight
    each class's term; with integer labels the mean divides by the summed weight of
    the targets, with probability targets by the number of positions (PyTorch's
    rules). ``ignore_index`` (integer labels only) masks the positions with that
    label; without it every label must lie in ``[0, K)``.
    """
    where = "softmax_cross_entropy_with"
    label_smoothing = _number(where, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    if weights is not None:
        weights = _vector(where, "weights", weights, positive=False)
        if not isinstance(weights, tuple):
            raise ValueError(f"{where}: weights must be one number per class (a 1-d list), "
                             f"got a scalar {weights!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool)
                                     or not isinstance(ignore_index, (int, np.integer))):
        raise ValueError(f"{where}: ignore_index must be an int or None, got {ignore_index!r}")
    settings = (("label_smoothing", label_smoothing or None), ("weights", weights),
                ("ignore_index", None if ignore_index is None else int(ignore_index)))
    if all(v is None for _, v in settings):
        return softmax_cross_entropy
    return _make("softmax_cross_entropy", _sce_parts,
                 **{k: v for k, v in settings if v is not None})


softmax_cross_entropy = _make("softmax_cross_entropy", _sce_parts)


@jax.tree_util.register_pytree_node_class
class MaskedTarget:
    """The target of a ``masked`` loss: ``target`` and its ``mask``, one pytree.

    It looks like ``target`` to the training loop: ``shape``, ``dtype`` and ``ndim``
    are the target's, and ``mt[idx]`` indexes target and mask together, so ``fit``
    can check, shuffle and minibatch it like one array::

        y = fn.losses.MaskedTarget(labels, mask)          # both (n, time)
        fn.fit(net, fn.losses.masked(loss), opt, params, x, y, epochs=10, batch_size=32, key=key)
    """

    def __init__(self, target, mask):
        self.target, self.mask = target, mask

    shape = property(lambda self: jnp.shape(self.target))
    ndim = property(lambda self: jnp.ndim(self.target))
    dtype = property(lambda self: jnp.result_type(self.target))

    def __getitem__(self, index):
        return MaskedTarget(self.target[index], self.mask[index])

    def tree_flatten(self):
        return (self.target, self.mask), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __repr__(self):
        return (f"MaskedTarget(target {_checks._fmt(self.shape)} {self.dtype}, mask "
                f"{_checks._fmt(jnp.shape(self.mask))})")


def masked(loss: Loss) -> Loss:
    """``loss`` averaged over unmasked positions; its target is
    :class:`MaskedTarget` ``(target, mask)`` (or a plain pair, for direct calls).

    ``masked(fn.losses.softmax_cross_entropy).fwd(logits, MaskedTarget(labels, mask))``
    with logits ``(batch, time, k)``, labels and mask ``(batch, time)`` is the mean of
    the per-position cross-entropies where ``mask`` is true (see the module doc).
    """
    fwd = loss.fwd if isinstance(loss, Loss) else None
    if not isinstance(fwd, _LossFwd):
        raise TypeError(f"masked: expected one of fnnet's built-in losses (fn.losses.*), got "
                        f"{loss!r}; a hand-made Loss must apply its mask itself.")
    if fwd.masked:
        return loss
    return Loss(_LossFwd(fwd.base, fwd.parts, fwd.settings, masked=True), loss.bwd)


# --- naming a hand-made loss --------------------------------------------------

def named_loss(name: str, fwd: Callable, bwd: Callable) -> Loss:
    """A :class:`~fnnet.Loss` from ``fwd(pred, target) -> (scalar, residuals)`` and
    ``bwd(residuals, g) -> dpred``, called ``name`` in error messages and reports
    (``loss.name``). ``fwd`` itself is not modified."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"named_loss: name must be a non-empty string, got {name!r}")
    if not (callable(fwd) and callable(bwd)):
        raise TypeError(f"named_loss({name!r}): fwd and bwd must be callables, got "
                        f"{type(fwd).__name__} and {type(bwd).__name__}")
    return Loss(NamedFunction(name, fwd), bwd)
