"""Hyperparameter checks shared by the optimizers, schedules and wrappers.

Every hyperparameter must be a real number (a Python int/float, a NumPy scalar
or a 0-d array): a string, ``None``, a bool or an array with axes is a
``TypeError`` that names the optimizer and the argument. Concrete values must
be finite and in range (``ValueError``). A traced value (an optimizer built
inside ``jit``/``vmap``, as :func:`fnnet.sweep` and ``fit`` do) is only checked
for being a scalar, since its value is not known at trace time.
"""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np


def _traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def number(where: str, what: str, value, *, kind: str = "a number"):
    """The concrete float value of ``value``, or ``None`` if it is traced; ``TypeError``
    unless it is a real scalar, ``ValueError`` if it is NaN or infinite."""
    if _traced(value):
        if value.ndim != 0:
            raise TypeError(f"{where}: {what} must be a scalar, got a traced array of shape "
                            f"{value.shape}")
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok and isinstance(value, (np.ndarray, jax.Array)):
        ok = value.ndim == 0 and np.issubdtype(value.dtype, np.number) \
            and not np.issubdtype(value.dtype, np.complexfloating)
        if not ok and np.issubdtype(value.dtype, np.number) and value.ndim:
            raise TypeError(f"{where}: {what} must be a scalar, got an array of shape "
                            f"{value.shape} (one optimizer per value: see fn.sweep)")
    if not ok:
        raise TypeError(f"{where}: {what} must be {kind}, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{where}: {what} must be finite, got {value!r}")
    return v


def is_zero(value) -> bool:
    """True only for a concrete value equal to 0 (a traced value counts as non-zero:
    it selects the general code path, e.g. momentum with a traced coefficient)."""
    return (not _traced(value) and not callable(value) and np.ndim(value) == 0
            and isinstance(value, (numbers.Number, np.ndarray, jax.Array)) and float(value) == 0.0)


def at_least(where: str, what: str, value, low: float = 0.0):
    """Raise ``ValueError(f"{where}: {what} must be >= low, got value")``."""
    v = number(where, what, value)
    if v is not None and not v >= low:
        raise ValueError(f"{where}: {what} must be >= {low:g}, got {value!r}")


def positive(where: str, what: str, value, hint: str = ""):
    """Raise unless ``value > 0`` (and finite)."""
    v = number(where, what, value)
    if v is not None and not v > 0:
        raise ValueError(f"{where}: {what} must be > 0, got {value!r}" + (f"; {hint}" if hint else ""))


def unit_interval(where: str, what: str, value):
    """Raise unless ``0 <= value < 1`` (betas, decay rates of moving averages)."""
    v = number(where, what, value)
    if v is not None and not 0 <= v < 1:
        raise ValueError(f"{where}: {what} must be in [0, 1), got {value!r}")


def open_interval(where: str, what: str, value, low: float, high: float):
    """Raise unless ``low < value < high``."""
    v = number(where, what, value)
    if v is not None and not low < v < high:
        raise ValueError(f"{where}: {what} must be in ({low:g}, {high:g}), got {value!r}")


def count(where: str, what: str, value, low: int = 1):
    """A step count: an int (not a bool) >= ``low``; ``ValueError`` otherwise. Traced ints pass."""
    if _traced(value):
        number(where, what, value)
        return
    ok = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low:
        raise ValueError(f"{where}: {what} must be an int >= {low}, got {value!r}")


def eps(where: str, value):
    """``eps`` guards a division ``u / (sqrt(v) + eps)``: it must be > 0, since a
    gradient that is exactly 0 (a dead ReLU unit) has ``u = v = 0`` and ``0 / 0``
    would be NaN."""
    positive(where, "eps", value,
             "eps = 0 turns an exactly-zero gradient (e.g. below a dead ReLU) into 0/0 = NaN")


def learning_rate(where: str, value):
    """A learning rate is a finite number >= 0 or a schedule ``step -> lr``."""
    if callable(value):
        return
    at_least_kind = "a number or a schedule step -> lr"
    v = number(where, "learning_rate", value, kind=at_least_kind)
    if v is not None and not v >= 0:
        raise ValueError(f"{where}: learning_rate must be >= 0, got {value!r}")
