"""Adam and AdamW, as ``torch.optim.Adam`` / ``torch.optim.AdamW``."""

from __future__ import annotations

from . import _validate
from .base import (Optimizer, ScalarOrSchedule, chain, check_learning_rate, recorded,
                   scale_by_learning_rate)
from .masking import masked
from .transforms import add_decayed_weights, scale_by_adam


def _decay(weight_decay, mask, where):
    decay = add_decayed_weights(weight_decay, where=where)
    return decay if mask is None else masked(decay, mask, where=where)


@recorded
def adam(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, weight_decay: float = 0.0, mask=None) -> Optimizer:
    """Adam following ``torch.optim.Adam`` (``b1, b2`` are torch's ``betas``)::

        g_t <- g_t + wd w_t                                  (only if weight_decay > 0: L2)
        m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2    (m_0 = v_0 = 0)
        m^_t = m_t / (1 - b1^t),           v^_t = v_t / (1 - b2^t)              (t = 1, 2, ...)
        w_{t+1} = w_t - lr_t m^_t / (sqrt(v^_t) + eps)       (eps outside the sqrt)

    ``mask`` (a tree of bools like the params, or a function params -> such a tree,
    e.g. :func:`~fnnet.optim.kernel_mask`) limits the L2 term to the leaves marked True.

    State: ``([EmptyState | MaskedState,] ScaleByAdamState(count, mu, nu), ScaleByScheduleState(count))``.
    """
    check_learning_rate("adam", learning_rate)
    _validate.at_least("adam", "weight_decay", weight_decay)
    parts = [] if _validate.is_zero(weight_decay) else [
        _decay(weight_decay, mask, "adam")]
    return chain(*parts, scale_by_adam(b1, b2, eps, where="adam"),
                 scale_by_learning_rate(learning_rate))


@recorded
def adamw(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-2, mask=None) -> Optimizer:
    """AdamW following ``torch.optim.AdamW``: Adam with DECOUPLED weight decay::

        m^_t, v^_t as in :func:`adam` (without the L2 term)
        w_{t+1} = w_t - lr_t wd w_t - lr_t m^_t / (sqrt(v^_t) + eps)

    The decay ``lr_t * wd * w_t`` uses the scheduled rate, as torch does.
    Default ``weight_decay=1e-2`` (torch's). ``mask`` limits the decay to the leaves
    marked True, e.g. ``mask=fn.optim.kernel_mask`` decays kernels and embedding
    tables but not biases or norm scales.
    State: ``(ScaleByAdamState(count, mu, nu), EmptyState() | MaskedState,
    ScaleByScheduleState(count))``.
    """
    check_learning_rate("adamw", learning_rate)
    return chain(scale_by_adam(b1, b2, eps, where="adamw"),
                 _decay(weight_decay, mask, "adamw"),
                 scale_by_learning_rate(learning_rate))
