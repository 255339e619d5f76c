"""Hand-written optimizers with optax's ``(init, update)`` contract. See :mod:`fnnet.optim.base`.

Named optimizers follow PyTorch's ``torch.optim`` update rules (see each
docstring); they are chains of the building blocks in
:mod:`fnnet.optim.transforms`. Learning rates may be schedules
(:mod:`fnnet.optim.schedules`).
"""

from .adagrad import adagrad
from .adam import adam, adamw
from .base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    ScaleByScheduleState,
    apply_updates,
    chain,
    scale,
    scale_by_learning_rate,
)
from .rmsprop import rmsprop
from .schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    warmup_cosine_decay_schedule,
)
from .sgd import sgd
from .transforms import (
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRssState,
    TraceState,
    add_decayed_weights,
    clip_by_global_norm,
    global_norm,
    scale_by_adam,
    scale_by_rms,
    scale_by_rss,
    trace,
)

__all__ = [
    "EmptyState", "GradientTransformation", "Optimizer", "ScaleByScheduleState",
    "apply_updates", "chain", "scale", "scale_by_learning_rate",
    "sgd", "rmsprop", "adagrad", "adam", "adamw",
    "constant_schedule", "exponential_decay", "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "TraceState", "ScaleByAdamState", "ScaleByRmsState", "ScaleByRssState",
    "trace", "scale_by_adam", "scale_by_rms", "scale_by_rss", "add_decayed_weights",
    "clip_by_global_norm", "global_norm",
]
