"""Adam and AdamW, as ``torch.optim.Adam`` / ``torch.optim.AdamW``."""

from __future__ import annotations

from .base import Optimizer, ScalarOrSchedule, chain, check_learning_rate, scale_by_learning_rate
from .transforms import add_decayed_weights, scale_by_adam


def adam(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, weight_decay: float = 0.0) -> Optimizer:
    """Adam following ``torch.optim.Adam`` (``b1, b2`` are torch's ``betas``)::

        g_t <- g_t + wd w_t                                  (only if weight_decay > 0: L2)
        m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2    (m_0 = v_0 = 0)
        m^_t = m_t / (1 - b1^t),           v^_t = v_t / (1 - b2^t)              (t = 1, 2, ...)
        w_{t+1} = w_t - lr_t m^_t / (sqrt(v^_t) + eps)       (eps outside the sqrt)

    State: ``([EmptyState,] ScaleByAdamState(count, mu, nu), ScaleByScheduleState(count))``.
    """
    check_learning_rate("adam", learning_rate)
    parts = [add_decayed_weights(weight_decay, where="adam")] if weight_decay != 0 else []
    return chain(*parts, scale_by_adam(b1, b2, eps, where="adam"),
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-2) -> Optimizer:
    """AdamW following ``torch.optim.AdamW``: Adam with DECOUPLED weight decay::

        m^_t, v^_t as in :func:`adam` (without the L2 term)
        w_{t+1} = w_t - lr_t wd w_t - lr_t m^_t / (sqrt(v^_t) + eps)

    The decay ``lr_t * wd * w_t`` uses the scheduled rate, as torch does.
    Default ``weight_decay=1e-2`` (torch's).
    State: ``(ScaleByAdamState(count, mu, nu), EmptyState(), ScaleByScheduleState(count))``.
    """
    check_learning_rate("adamw", learning_rate)
    return chain(scale_by_adam(b1, b2, eps, where="adamw"),
                 add_decayed_weights(weight_decay, where="adamw"),
                 scale_by_learning_rate(learning_rate))
