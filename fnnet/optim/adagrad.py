"""Adagrad, as ``torch.optim.Adagrad``."""

from __future__ import annotations

from .base import (Optimizer, ScalarOrSchedule, chain, check_learning_rate, recorded,
                   scale_by_learning_rate)
from .transforms import scale_by_rss


@recorded
def adagrad(learning_rate: ScalarOrSchedule = 0.01, initial_accumulator_value: float = 0.0,
            eps: float = 1e-10) -> Optimizer:
    """Adagrad following ``torch.optim.Adagrad`` (``lr_decay=0``; use a schedule instead)::

        s_t = s_{t-1} + g_t^2                  (s_0 = initial_accumulator_value)
        w_{t+1} = w_t - lr_t g_t / (sqrt(s_t) + eps)        (eps outside the sqrt)

    State: ``(ScaleByRssState(sum_of_squares), ScaleByScheduleState(count))``.
    """
    check_learning_rate("adagrad", learning_rate)
    return chain(scale_by_rss(initial_accumulator_value, eps, where="adagrad"),
                 scale_by_learning_rate(learning_rate))
