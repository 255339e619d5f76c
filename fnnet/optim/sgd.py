"""Stochastic gradient descent: ``w <- w - lr_t * g``."""

from __future__ import annotations

from .base import Optimizer, ScalarOrSchedule, chain, scale_by_learning_rate


def sgd(learning_rate: ScalarOrSchedule) -> Optimizer:
    """Plain SGD, PyTorch's ``torch.optim.SGD`` without momentum::

        w_{t+1} = w_t - lr_t * g_t

    ``learning_rate`` is a float >= 0 or a schedule ``step -> lr`` (step from 0).
    State: ``(ScaleByScheduleState(count),)``.
    """
    return chain(scale_by_learning_rate(learning_rate))
