"""SwiGLU: Llama's gated MLP, ``y = (silu(x W_gate) * (x W_up)) W_down``.

Shapes: ``x (..., d)``; params ``{"w_gate": (d, hidden), "w_up": (d, hidden),
"w_down": (hidden, d)}`` (+ ``{"b_gate": (hidden,), "b_up": (hidden,), "b_down":
(d,)}`` with ``bias=True``); ``y (..., d)``. ``s`` is the sigmoid.

Forward::

    g = x W_gate + b_gate,   u = x W_up + b_up          (..., hidden)
    a = silu(g) = g s(g)
    h = a * u
    y = h W_down + b_down

Backward (sums over every leading axis for the params)::

    dW_down = h^T dy,   db_down = sum(dy),   dh = dy W_down^T
    du = dh * a,        da = dh * u
    dg = da * s(g) (1 + g (1 - s(g)))                   silu' (the Silu layer's rule)
    dW_gate = x^T dg,   dW_up = x^T du   (biases: the sums of dg, du)
    dx = dg W_gate^T + du W_up^T

Residuals: ``(x, g, u)`` and the kernels (``a``, ``h`` are recomputed: elementwise).

Hugging Face: ``LlamaMLP`` (``hidden_act="silu"``) with ``gate_proj.weight =
w_gate.T``, ``up_proj.weight = w_up.T``, ``down_proj.weight = w_down.T`` (biases
verbatim when ``mlp_bias``). Default init: ``w_init`` (Xavier uniform), zero biases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named
from ..initializers import glorot_uniform, zeros
from ..structure import recorded
from . import _projections

NAMES = ("gate", "up", "down")


def _silu_parts(g):
    s = jax.nn.sigmoid(g)
    return g * s, s


@recorded
def SwiGLU(hidden: int, *, bias: bool = False, w_init=glorot_uniform, b_init=zeros,
           dtype=jnp.float32) -> Layer:
    """The gated MLP ``(silu(x W_gate) * (x W_up)) W_down`` with ``hidden`` units,
    back to the input's width."""
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise ValueError(f"SwiGLU: hidden must be a positive int, got {hidden!r}")
    name = f"SwiGLU({hidden}" + (", bias=True" if bias else "") + ")"

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must end in the feature axis (..., d), "
                             f"got {tuple(input_shape)}")
        d = input_shape[-1]
        shapes = {"gate": (d, hidden), "up": (d, hidden), "down": (hidden, d)}
        return _projections.init(key, shapes, bias, w_init, b_init, dtype)

    lin = _projections.linear

    def fwd(params, x, *, key=None):
        _projections.check_keys(name, params, NAMES, bias)
        wg, wu, wd = (params["w_" + n] for n in NAMES)
        _checks.floating(name, x)
        _checks.batched(name, x, layout="(batch, ..., features)")
        _checks.last_axis(name, x, wg.shape[0], f"its kernel w_gate of shape {wg.shape}")
        if wu.shape != wg.shape or wd.shape != wg.shape[::-1]:
            raise ValueError(f"{name}: kernels w_gate {wg.shape}, w_up {wu.shape}, w_down "
                             f"{wd.shape}; expected (d, hidden), (d, hidden), (hidden, d)")
        g, u = lin(params, "gate", x), lin(params, "up", x)
        a, _ = _silu_parts(g)
        return lin(params, "down", a * u), (x, g, u, wg, wu, wd)

    def cotangents(res, dy):
        """``(h, dg, du)``: the down projection's input and the gate/up outputs' cotangents."""
        x, g, u, wg, wu, wd = res
        a, s = _silu_parts(g)
        dh = dy @ wd.T
        return a * u, dh * u * (s * (1 + g * (1 - s))), dh * a

    def bwd(res, dy):
        x, g, u, wg, wu, wd = res
        h, dg, du = cotangents(res, dy)
        flat = lambda t: t.reshape(-1, t.shape[-1])
        dparams = {"w_gate": flat(x).T @ flat(dg), "w_up": flat(x).T @ flat(du),
                   "w_down": flat(h).T @ flat(dy)}
        if bias:
            dparams.update({"b_gate": flat(dg).sum(0), "b_up": flat(du).sum(0),
                            "b_down": flat(dy).sum(0)})
        dx = (dg @ wg.T + du @ wu.T).astype(x.dtype)
        return {n: a.astype(wg.dtype) for n, a in dparams.items()}, dx

    # fnnet.per_example: three Dense layers over the positions of each example
    def _pairs(res, dy):
        x = res[0]
        h, dg, du = cotangents(res, dy)
        n = x.shape[0]
        view = lambda t: t.reshape(n, -1, t.shape[-1])
        return {"gate": (view(x), view(dg)), "up": (view(x), view(du)), "down": (view(h), view(dy))}

    return named(name, init, fwd, bwd,
                 per_example=lambda res, dy: _projections.per_example(
                     _pairs(res, dy), bias, res[3].dtype),
                 sqnorm=lambda res, dy: _projections.sqnorm(_pairs(res, dy), bias))  # ghost
