"""Stochastic gradient descent, with optional (Nesterov) momentum, as ``torch.optim.SGD``."""

from __future__ import annotations

from . import _validate
from .base import (Optimizer, ScalarOrSchedule, chain, check_learning_rate, recorded,
                   scale_by_learning_rate)
from .transforms import trace


@recorded
def sgd(learning_rate: ScalarOrSchedule, momentum: float = 0.0, nesterov: bool = False) -> Optimizer:
    """SGD following PyTorch's ``torch.optim.SGD`` (dampening 0, no weight decay)::

        momentum = 0:   w_{t+1} = w_t - lr_t g_t
        momentum > 0:   b_t = mu b_{t-1} + g_t        (b_1 = g_1)
                        w_{t+1} = w_t - lr_t b_t                     (heavy ball)
                        w_{t+1} = w_t - lr_t (g_t + mu b_t)          (nesterov=True)

    ``learning_rate`` is a float >= 0 or a schedule ``step -> lr`` (step from 0).
    State: ``(ScaleByScheduleState(count),)`` without momentum,
    ``(TraceState(trace), ScaleByScheduleState(count))`` with it.
    For L2 weight decay, chain ``add_decayed_weights(wd)`` in front (on kernels only:
    ``masked(add_decayed_weights(wd), kernel_mask)``).
    """
    check_learning_rate("sgd", learning_rate)
    _validate.at_least("sgd", "momentum", momentum)
    if not isinstance(nesterov, bool):
        raise TypeError(f"sgd: nesterov must be True or False, got {nesterov!r}")
    if nesterov and _validate.is_zero(momentum):
        # Also rejected by torch: Nesterov without momentum is plain SGD in disguise.
        raise ValueError(f"sgd: nesterov=True needs momentum > 0, got momentum={momentum!r}")
    if _validate.is_zero(momentum):
        return chain(scale_by_learning_rate(learning_rate))
    return chain(trace(momentum, nesterov, where="sgd"), scale_by_learning_rate(learning_rate))
