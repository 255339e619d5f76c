"""Hand-written optimizers with optax's ``(init, update)`` contract. See :mod:`fnnet.optim.base`."""

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
from .sgd import sgd

__all__ = [
    "EmptyState", "GradientTransformation", "Optimizer", "ScaleByScheduleState",
    "apply_updates", "chain", "scale", "scale_by_learning_rate", "sgd",
]
