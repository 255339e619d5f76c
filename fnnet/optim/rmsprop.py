"""RMSprop, as ``torch.optim.RMSprop``."""

from __future__ import annotations

from . import _validate
from .base import (Optimizer, ScalarOrSchedule, chain, check_learning_rate, recorded,
                   scale_by_learning_rate)
from .transforms import scale_by_rms, trace


@recorded
def rmsprop(learning_rate: ScalarOrSchedule = 0.01, decay: float = 0.99, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False) -> Optimizer:
    """RMSprop following ``torch.optim.RMSprop`` (``decay`` is torch's ``alpha``)::

        v_t = decay v_{t-1} + (1 - decay) g_t^2                  (v_0 = 0)
        d_t = g_t / (sqrt(v_t) + eps)                            (eps outside the sqrt)
        centered:  a_t = decay a_{t-1} + (1 - decay) g_t;  d_t = g_t / (sqrt(v_t - a_t^2) + eps)
        momentum = 0:  w_{t+1} = w_t - lr_t d_t
        momentum > 0:  b_t = mu b_{t-1} + d_t  (b_0 = 0);  w_{t+1} = w_t - lr_t b_t

    State: ``(ScaleByRmsState(nu, mu), [TraceState,] ScaleByScheduleState(count))``.
    """
    check_learning_rate("rmsprop", learning_rate)
    _validate.at_least("rmsprop", "momentum", momentum)
    if not isinstance(centered, bool):
        raise TypeError(f"rmsprop: centered must be True or False, got {centered!r}")
    parts = [scale_by_rms(decay, eps, centered, where="rmsprop")]
    if not _validate.is_zero(momentum):
        parts.append(trace(momentum, where="rmsprop"))
    return chain(*parts, scale_by_learning_rate(learning_rate))
