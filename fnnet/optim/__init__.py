"""Hand-written optimizers with optax's ``(init, update)`` contract. See :mod:`fnnet.optim.base`.

Named optimizers follow PyTorch's ``torch.optim`` update rules (see each
docstring); they are chains of the building blocks in
:mod:`fnnet.optim.transforms`. Learning rates may be schedules
(:mod:`fnnet.optim.schedules`). Wrappers: :func:`masked` / :func:`freeze`
(:mod:`fnnet.optim.masking`), :func:`accumulate` (gradient accumulation),
:func:`dynamic_loss_scale` (mixed precision, :mod:`fnnet.optim.loss_scale`).
Every optimizer carries its hyperparameters as data (:mod:`fnnet.optim.recipe`).
"""

from .accumulate import AccumulateState, accumulate
from .adagrad import adagrad
from .adam import adam, adamw
from .base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    ScaleByScheduleState,
    apply_updates,
    chain,
    check_optimizer,
    current_learning_rate,
    scale,
    scale_by_learning_rate,
)
from .loss_scale import DynamicLossScaleState, dynamic_loss_scale
from .masking import MaskedNode, MaskedState, freeze, kernel_mask, masked
from .recipe import (Recipe, hparams_for, hparams_of, merge_hparams, rebuild, recipe_of,
                     split_hparams)
from .rmsprop import rmsprop
from .schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
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
    set_to_zero,
    trace,
)

__all__ = [
    "EmptyState", "GradientTransformation", "Optimizer", "ScaleByScheduleState",
    "apply_updates", "chain", "scale", "scale_by_learning_rate",
    "sgd", "rmsprop", "adagrad", "adam", "adamw",
    "constant_schedule", "linear_schedule", "exponential_decay", "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "TraceState", "ScaleByAdamState", "ScaleByRmsState", "ScaleByRssState",
    "trace", "scale_by_adam", "scale_by_rms", "scale_by_rss", "add_decayed_weights",
    "clip_by_global_norm", "global_norm", "set_to_zero",
    "masked", "freeze", "kernel_mask", "MaskedState", "MaskedNode",
    "accumulate", "AccumulateState", "dynamic_loss_scale", "DynamicLossScaleState",
    "check_optimizer", "current_learning_rate",
    "Recipe", "recipe_of", "hparams_of", "rebuild", "split_hparams", "merge_hparams", "hparams_for",
]
