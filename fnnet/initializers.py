"""Weight initializers: each is ``init(key, shape, dtype=jnp.float32) -> array``.

Fan-in / fan-out follow the usual convention for ``(in, out)`` Dense kernels and
``(kh, kw, in, out)`` HWIO conv kernels: ``fan_in = prod(shape[:-1])`` and
``fan_out = prod(shape[:-2]) * shape[-1]`` (receptive field times channels).

=================  ==========================================  ===================
initializer        distribution                                 PyTorch equivalent
=================  ==========================================  ===================
normal(s)          N(0, s^2)                                    nn.init.normal_
uniform(s)         U(-s, s)                                     nn.init.uniform_
zeros              0                                            nn.init.zeros_
glorot_uniform     U(-a, a), a = sqrt(6 / (fan_in + fan_out))   xavier_uniform_
glorot_normal      N(0, 2 / (fan_in + fan_out))                 xavier_normal_
he_uniform         U(-a, a), a = sqrt(6 / fan_in)               kaiming_uniform_
he_normal          N(0, 2 / fan_in)                             kaiming_normal_
lecun_normal       N(0, 1 / fan_in)                             --
=================  ==========================================  ===================

The ``*_normal`` initializers here are plain (untruncated) normals.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from .structure import recorded

__all__ = [
    "normal", "uniform", "zeros", "ones", "constant",
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal",
    "fans",
]


def fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a kernel of the given shape."""
    if len(shape) < 2:
        raise ValueError(f"fans: a kernel needs at least 2 axes, got shape {tuple(shape)}")
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


@recorded
def normal(stddev: float = 1e-2):
    """N(0, stddev^2)."""

    def init(key, shape, dtype=jnp.float32):
        return stddev * jax.random.normal(key, shape, dtype)

    return init


@recorded
def uniform(scale: float = 1e-2):
    """U(-scale, scale)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


@recorded
def constant(value: float):
    """Every entry equal to ``value``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)

    return init


def zeros(key, shape, dtype=jnp.float32):
    """All zeros (the default bias initializer)."""
    del key
    return jnp.zeros(shape, dtype)


def ones(key, shape, dtype=jnp.float32):
    """All ones (the default LayerNorm scale)."""
    del key
    return jnp.ones(shape, dtype)


def _variance_scaling(scale: float, mode: str, distribution: str):
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fans(shape)
        n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
        var = scale / n
        if distribution == "uniform":
            a = math.sqrt(3 * var)
            return jax.random.uniform(key, shape, dtype, -a, a)
        return math.sqrt(var) * jax.random.normal(key, shape, dtype)

    return init


glorot_uniform = _variance_scaling(1.0, "fan_avg", "uniform")
glorot_uniform.__doc__ = "U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Xavier/Glorot)."
glorot_normal = _variance_scaling(1.0, "fan_avg", "normal")
glorot_normal.__doc__ = "N(0, 2 / (fan_in + fan_out)) (Xavier/Glorot)."
he_uniform = _variance_scaling(2.0, "fan_in", "uniform")
he_uniform.__doc__ = "U(-a, a), a = sqrt(6 / fan_in) (He/Kaiming, for ReLU)."
he_normal = _variance_scaling(2.0, "fan_in", "normal")
he_normal.__doc__ = "N(0, 2 / fan_in) (He/Kaiming, for ReLU)."
lecun_normal = _variance_scaling(1.0, "fan_in", "normal")
lecun_normal.__doc__ = "N(0, 1 / fan_in) (LeCun)."
