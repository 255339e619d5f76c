"""Activations: parameter-free layers (params ``()``), elementwise on any input shape
(except Softmax/LogSoftmax: over the last axis of a batched input).

Each entry gives the forward, what it saves, and the backward ``dx = dy * f'(x)``
written from the saved residual:

==============  ============================  ==========  ===============================
layer           forward y                     residual    backward dx
==============  ============================  ==========  ===============================
Identity        x  (any dtype)                --          dy  (None for an integer/bool x)
Relu            max(x, 0)                     x > 0       dy * (x > 0)
LeakyRelu(a)    x if x > 0 else a x           x > 0       dy * (1 if x > 0 else a)
Sigmoid         1 / (1 + e^-x)                y           dy * y (1 - y)
Tanh            tanh x                        y           dy (1 + y)(1 - y)
Gelu(False)     x Phi(x)                      x           dy (Phi(x) + x phi(x))
Gelu(True)      x (1 + tanh u) / 2            x           dy ((1 + t) + x (1 + t)(1 - t) u') / 2
Elu(a)          x if x > 0 else a (e^x - 1)   x           dy if x > 0 else dy a e^x
Softplus        log(1 + e^x)                  s(x)        dy s(x)
Silu            x s(x)                        x           dy s(x) (1 + x (1 - s(x)))
Softmax         e^x / sum e^x (last axis)     y           y (dy - sum(dy y))
LogSoftmax      x - logsumexp x (last axis)   y           dy - e^y sum(dy)
==============  ============================  ==========  ===============================

Notation: ``s`` is the sigmoid, ``Phi``/``phi`` the standard normal CDF/density,
``u = sqrt(2/pi) (x + 0.044715 x^3)``, ``t = tanh u``, ``u' = sqrt(2/pi) (1 +
3 * 0.044715 x^2)``; the sums of Softmax/LogSoftmax run over the last axis
(keepdims), which must be the class axis of a batched input.

PyTorch equivalences: ``Gelu(approximate=False)`` (the default) is ``nn.GELU()``,
``Gelu(approximate=True)`` is ``nn.GELU(approximate="tanh")`` and
``jax.nn.gelu``'s default; ``Elu(alpha)`` is ``nn.ELU(alpha)``; ``Silu`` is
``nn.SiLU`` (swish); ``Softmax``/``LogSoftmax`` are ``nn.Softmax(dim=-1)`` /
``nn.LogSoftmax(dim=-1)``; ``Softplus`` is ``nn.Softplus()`` (which switches to
``x`` above 20; here ``logaddexp(x, 0)`` is exact and finite for every ``x``).

Kinks and NaN: at exactly ``x = 0`` Relu and LeakyRelu take the left derivative
(``0`` and ``a``), and ``jax.grad`` of the same forward takes that same one-sided
derivative: Relu's forward is ``jax.nn.relu`` (``max(x, 0)``, whose custom derivative
is ``x > 0``), LeakyRelu's is ``where(x > 0, x, a x)``. Both keep a NaN input NaN
(``max(NaN, 0)`` and ``a * NaN`` are NaN; ``where(x > 0, x, 0)`` would turn it into
0 and hide it); at a NaN input the backward, like ``jax.grad``, takes the ``x <= 0``
branch. Every other activation here propagates NaN through its arithmetic.
Residuals of Relu/LeakyRelu are boolean masks (1 byte per unit). Elu's forward
feeds ``expm1`` with ``where(x > 0, 0, x)``, so the unused branch never overflows
(no ``0 * inf`` in ``jax.grad``) and the derivative at 0 is the left one, ``a``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, Static, named, no_params
from ..structure import recorded


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

    return named(name, no_params, fwd, bwd)


def _identity_fwd(params, x, *, key=None):
    # any dtype passes (a bool/int mask riding beside the data in a graph); an integer
    # input gets the cotangent None, like every integer input
    return x, Static(jnp.issubdtype(jnp.result_type(x), jnp.floating))


Identity = named("Identity", no_params, _identity_fwd,
                 lambda is_float, dy: ((), dy if is_float.value else None))

Relu = elementwise(
    "Relu",
    # jax.nn.relu, not where(x > 0, x, 0): a NaN input stays NaN (the where would
    # return 0 and hide it); its custom derivative is the same left one at 0 as bwd.
    lambda x: (jax.nn.relu(x), x > 0),
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


@recorded
def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """``x if x > 0 else negative_slope * x`` (PyTorch's ``nn.LeakyReLU``)."""
    a = float(negative_slope)
    return elementwise(
        f"LeakyRelu({a:g})",
        lambda x: (jnp.where(x > 0, x, a * x), x > 0),
        lambda mask, dy: jnp.where(mask, dy, a * dy),
    )


def _x_residual(f):
    return lambda x: (f(x), x)


@recorded
def Gelu(approximate: bool = False) -> Layer:
    """GELU ``x * Phi(x)``; ``approximate=True`` uses the tanh form (see the table)."""
    if approximate:
        c, k = math.sqrt(2 / math.pi), 0.044715

        def bwd(x, dy):
            # beyond |x| = 100, t = +-1 exactly and the derivative is exactly 1 or 0;
            # clipping keeps x^2 finite there (no 0 * inf, unlike jax.grad at |x| > 1e19)
            x = jnp.clip(x, -100, 100)
            t = jnp.tanh(c * (x + k * x ** 3))
            return dy * 0.5 * ((1 + t) + x * (1 + t) * (1 - t) * c * (1 + 3 * k * x * x))
    else:

        def bwd(x, dy):
            cdf = 0.5 * (1 + jax.lax.erf(x / math.sqrt(2)))
            return dy * (cdf + x * jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))

    fwd = _x_residual(lambda x: jax.nn.gelu(x, approximate=bool(approximate)))
    return elementwise(f"Gelu(approximate={bool(approximate)})", fwd, bwd)


@recorded
def Elu(alpha: float = 1.0) -> Layer:
    """``x if x > 0 else alpha * (exp(x) - 1)`` (PyTorch's ``nn.ELU``)."""
    a = float(alpha)

    def fwd(x):
        return jnp.where(x > 0, x, a * jnp.expm1(jnp.where(x > 0, 0, x))), x

    def bwd(x, dy):
        return jnp.where(x > 0, dy, dy * (a * jnp.exp(jnp.where(x > 0, 0, x))))

    return elementwise(f"Elu({a:g})", fwd, bwd)


Softplus = elementwise("Softplus", lambda x: (jnp.logaddexp(x, 0), jax.nn.sigmoid(x)),
                       lambda s, dy: dy * s)


def _silu_bwd(x, dy):
    s = jax.nn.sigmoid(x)
    return dy * s * (1 + x * (1 - s))


Silu = elementwise("Silu", _x_residual(lambda x: x * jax.nn.sigmoid(x)), _silu_bwd)


def _classes(name, f):
    def fwd(x):
        _checks.batched(name, x, layout="(batch, classes)")
        y = f(x, axis=-1)
        return y, y

    return fwd


Softmax = elementwise("Softmax", _classes("Softmax", jax.nn.softmax),
                      lambda y, dy: y * (dy - jnp.sum(dy * y, axis=-1, keepdims=True)))

LogSoftmax = elementwise("LogSoftmax", _classes("LogSoftmax", jax.nn.log_softmax),
                         lambda y, dy: dy - jnp.exp(y) * jnp.sum(dy, axis=-1, keepdims=True))
