"""Elementwise activations: parameter-free layers (params ``()``), any input shape.

Each entry gives the forward, what it saves, and the backward ``dx = dy * f'(x)``
written from the saved residual:

==============  ============================  ==========  ===============================
layer           forward y                     residual    backward dx
==============  ============================  ==========  ===============================
Identity        x                             --          dy
Relu            x if x > 0 else 0             x > 0       dy * (x > 0)
LeakyRelu(a)    x if x > 0 else a x           x > 0       dy * (1 if x > 0 else a)
Sigmoid         1 / (1 + e^-x)                y           dy * y (1 - y)
Tanh            tanh x                        y           dy (1 + y)(1 - y)
==============  ============================  ==========  ===============================

Kinks: at exactly ``x = 0`` Relu and LeakyRelu take the left derivative
(``0`` and ``a``), and the forwards are written with ``where(x > 0, ...)`` so that
``jax.grad`` of the same forward takes that same one-sided derivative.
Residuals of Relu/LeakyRelu are boolean masks (1 byte per unit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named


def _init(key, input_shape):
    del key, input_shape
    return ()


def elementwise(name: str, fwd_fn, bwd_fn) -> Layer:
    """Build a parameter-free elementwise layer.

    ``fwd_fn(x) -> (y, res)`` and ``bwd_fn(res, dy) -> dx``. The input must be a
    floating-point array; ``dx`` is returned in ``x``'s dtype.
    """

    def fwd(params, x, *, key=None):
        _checks.floating(name, x)
        y, res = fwd_fn(x)
        return y, res

    def bwd(res, dy):
        return (), bwd_fn(res, dy)

    return named(name, _init, fwd, bwd)


Identity = elementwise("Identity", lambda x: (x, None), lambda res, dy: dy)

Relu = elementwise(
    "Relu",
    lambda x: (jnp.where(x > 0, x, 0).astype(x.dtype), x > 0),
    lambda mask, dy: jnp.where(mask, dy, 0).astype(dy.dtype),
)


def _sigmoid_fwd(x):
    y = jax.nn.sigmoid(x)
    return y, y


Sigmoid = elementwise("Sigmoid", _sigmoid_fwd, lambda y, dy: dy * y * (1 - y))


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, y


# (1 + y)(1 - y) rather than 1 - y^2: no cancellation when |y| is close to 1.
Tanh = elementwise("Tanh", _tanh_fwd, lambda y, dy: (dy + dy * y) * (1 - y))


def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """``x if x > 0 else negative_slope * x`` (PyTorch's ``nn.LeakyReLU``)."""
    a = float(negative_slope)
    return elementwise(
        f"LeakyRelu({a:g})",
        lambda x: (jnp.where(x > 0, x, a * x), x > 0),
        lambda mask, dy: jnp.where(mask, dy, a * dy),
    )
