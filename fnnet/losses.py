"""Losses: ``Loss(fwd, bwd)`` with ``fwd(pred, target) -> (scalar, residuals)`` and
``bwd(residuals, g) -> dpred``. Every loss is a mean, so its gradient carries ``1/n``.

=============================  ===========================================  ==========================
loss                           value (mean over N)                           backward dpred (times g)
=============================  ===========================================  ==========================
mean_squared_error             mean((p - t)^2), N = number of elements      2 (p - t) / N
sigmoid_binary_cross_entropy   mean(softplus(z) - t z), N = elements        (sigmoid(z) - t) / N
softmax_cross_entropy          mean_n(-sum_k t_k log_softmax(z)_k), N = n   (softmax(z) sum_k t_k - t) / n
=============================  ===========================================  ==========================

Classification losses take **logits** ``z``, never probabilities; they are
written in log-sigmoid / log-softmax form, so values and gradients stay finite
for logits of any magnitude (``softplus(z) - t z == -[t log s + (1-t) log(1-s)]``
with ``s = sigmoid(z)``). ``pred`` and ``target`` shapes must match exactly
(no silent broadcasting); ``softmax_cross_entropy`` also takes integer labels
``(n,)`` for logits ``(n, k)``. The means match PyTorch's ``MSELoss``,
``BCEWithLogitsLoss`` and ``CrossEntropyLoss`` with ``reduction="mean"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _checks
from .core import Loss

__all__ = ["mean_squared_error", "sigmoid_binary_cross_entropy", "softmax_cross_entropy"]


def _loss(name, fwd, bwd) -> Loss:
    fwd.fnnet_name = name
    return Loss(fwd, bwd)


def _targets(name, pred, target):
    _checks.floating(name, pred, "prediction/logits")
    _checks.same_shape(
        name, pred, target, "prediction", "target",
        hint="For a single output unit, reshape labels to (n, 1), e.g. y[:, None]."
        if jnp.ndim(target) == jnp.ndim(pred) - 1 else "",
    )
    return jnp.asarray(target).astype(jnp.result_type(pred))


# --- mean squared error -------------------------------------------------------

def _mse_fwd(pred, target):
    diff = pred - _targets("mean_squared_error", pred, target)
    return jnp.mean(diff * diff), diff


def _mse_bwd(diff, g):
    return (2 * g / diff.size) * diff


mean_squared_error = _loss("mean_squared_error", _mse_fwd, _mse_bwd)


# --- sigmoid binary cross-entropy -----------------------------------------------

def _bce_fwd(logits, target):
    t = _targets("sigmoid_binary_cross_entropy", logits, target)
    value = jnp.mean(jax.nn.softplus(logits) - t * logits)
    # Fused backward: the residual is the finished gradient (sigmoid(z) - t) / N,
    # one array instead of (logits, t). sigmoid(z) = where(z >= 0, 1, e) / (1 + e)
    # with e = exp(-|z|), the exponential softplus already computes (XLA shares
    # it), so the backward costs no second exp and no division chain; finite for
    # any z. jax.grad of the value is unchanged: the residual is dead code there.
    e = jnp.exp(-jnp.abs(logits))
    sig = jnp.where(logits >= 0, 1, e) / (1 + e)
    return value, (sig - t) / logits.size


def _bce_bwd(dlogits, g):
    return g * dlogits


sigmoid_binary_cross_entropy = _loss("sigmoid_binary_cross_entropy", _bce_fwd, _bce_bwd)


# --- softmax cross-entropy ----------------------------------------------------

def _sce_fwd(logits, target):
    name = "softmax_cross_entropy"
    _checks.floating(name, logits, "logits")
    _checks.batched(name, logits, layout="(batch, classes)")
    if jnp.ndim(target) == jnp.ndim(logits) - 1 and jnp.issubdtype(jnp.result_type(target), jnp.integer):
        if jnp.shape(target) != jnp.shape(logits)[:-1]:
            raise ValueError(f"{name}: integer labels shape {jnp.shape(target)} must be "
                             f"logits shape {jnp.shape(logits)} without the class axis")
        t = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
        # sum_k t_k without a pass over the one-hot: 1 for a label in [0, k), else 0
        t_sum = ((target >= 0) & (target < logits.shape[-1])).astype(logits.dtype)[..., None]
    elif jnp.ndim(target) == jnp.ndim(logits) - 1:
        raise TypeError(f"{name}: labels of shape {jnp.shape(target)} must be integers "
                        f"(class indices), got dtype {jnp.result_type(target)}")
    elif (jnp.issubdtype(jnp.result_type(target), jnp.integer)
          and jnp.shape(target) != jnp.shape(logits)):
        raise ValueError(f"{name}: integer labels have shape {_checks._fmt(jnp.shape(target))}; "
                         f"for logits {_checks._fmt(jnp.shape(logits))} class indices must be "
                         f"{_checks._fmt(jnp.shape(logits)[:-1])} (a column (n, 1): "
                         f"y.reshape(-1)), or targets shaped like the logits.")
    else:
        t = _targets(name, logits, target)
        t_sum = jnp.sum(t, axis=-1, keepdims=True)
    logp = jax.nn.log_softmax(logits, axis=-1)
    n = logits.size // logits.shape[-1]
    # Fused backward: the residual is the finished gradient (softmax(z) sum_k t_k - t) / n,
    # one array. XLA fuses it with the forward's log-softmax (one exp pass) and forms
    # an integer label's one-hot inside that fusion instead of materialising it and
    # logp for the backward. jax.grad of the value is unchanged (dead code there).
    return -jnp.sum(t * logp) / n, (jnp.exp(logp) * t_sum - t) / n


def _sce_bwd(dlogits, g):
    return g * dlogits


softmax_cross_entropy = _loss("softmax_cross_entropy", _sce_fwd, _sce_bwd)
softmax_cross_entropy.fwd.__doc__ = (
    "Integer labels outside [0, k) select no class (one_hot of them is all zeros) "
    "and contribute 0: validate labels on the host."
)
