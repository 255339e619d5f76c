"""Hyperparameter checks shared by the optimizers and schedules.

Every check runs on concrete Python numbers only: a traced value (an
optimizer built inside ``jit``/``vmap``, as :func:`fnnet.sweep` does) is
skipped, since its value is not known at trace time.
"""

from __future__ import annotations

import jax


def _concrete(value):
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def at_least(where: str, what: str, value, low: float = 0.0):
    """Raise ``ValueError(f"{where}: {what} must be >= low, got value")``."""
    v = _concrete(value)
    if v is not None and not v >= low:
        raise ValueError(f"{where}: {what} must be >= {low:g}, got {value!r}")


def positive(where: str, what: str, value):
    """Raise unless ``value > 0``."""
    v = _concrete(value)
    if v is not None and not v > 0:
        raise ValueError(f"{where}: {what} must be > 0, got {value!r}")


def unit_interval(where: str, what: str, value):
    """Raise unless ``0 <= value < 1`` (betas, decay rates of moving averages)."""
    v = _concrete(value)
    if v is not None and not 0 <= v < 1:
        raise ValueError(f"{where}: {what} must be in [0, 1), got {value!r}")


def learning_rate(where: str, value):
    """A learning rate is a float >= 0 or a schedule ``step -> lr``."""
    if callable(value):
        return
    if _concrete(value) is None and not isinstance(value, jax.core.Tracer):
        raise TypeError(f"{where}: learning_rate must be a float or a schedule step -> lr, "
                        f"got {value!r}")
    at_least(where, "learning_rate", value)
