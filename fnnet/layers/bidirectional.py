"""Bidirectional: run a sequence layer forward and (a second copy) backward in time.

Shapes: ``x (batch, T, in)`` -> ``y (batch, T, 2 h)`` for a wrapped layer mapping
``(batch, T, in) -> (batch, T, h)`` (an RNN, LSTM, GRU, a causal Conv1D, ...).
Params ``{"forward": p_f, "backward": p_b}``: two independent sets of the wrapped
layer's params. With ``R`` the time reversal ``(R x)[:, t] = x[:, T - 1 - t]``::

    y_f = layer(p_f, x)                 y_b = R layer(p_b, R x)
    y   = concat([y_f, y_b], axis=-1)   (features: forward first, then backward)

Backward (``R`` is its own transpose; the two directions add at the input)::

    dy_f, dy_b     = dy[..., :h], dy[..., h:]
    dp_f, dx_f     = layer.bwd(res_f, dy_f)
    dp_b, dx_b     = layer.bwd(res_b, R dy_b)
    dx             = dx_f + R dx_b

Stacked bidirectional RNNs are ``serial``s of these (the second layer reads the
``2 h`` features of the first). A key (training) is split in two, one per
direction. Residuals: both directions' residuals and ``Static(h)``. It is a graph
(two children: the layer and its time-reversed copy), so every tool sees both.

Padded batches: the backward direction reads a padded sequence from its END, so
with padding at the end it starts on the padding; pad at the start, or use
sequences of equal length (fnnet has no packed sequences).

PyTorch: ``nn.LSTM(in, h, batch_first=True, bidirectional=True)`` (same for
``nn.RNN``/``nn.GRU``) with ``weight_ih_l0 = p["forward"]["w_ih"].T``,
``weight_ih_l0_reverse = p["backward"]["w_ih"].T`` (and ``w_hh``, ``b_ih``,
``b_hh`` likewise); ``num_layers=2`` is ``serial(Bidirectional(LSTM(h)),
Bidirectional(LSTM(h)))`` with the ``_l1`` weights in the second.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _checks
from ..core import Graph, Layer, Static, combinator, layer_keys
from ..structure import recorded


@recorded
def Bidirectional(layer: Layer) -> Layer:
    """``layer`` run forward and, with its own params, backward in time; outputs
    concatenated on the feature axis. ``layer`` maps ``(batch, T, in) -> (batch, T, h)``."""
    if not isinstance(layer, Layer):
        hint = " (a constructor? call it, e.g. fn.LSTM(64))" if callable(layer) else ""
        raise TypeError(f"Bidirectional: expected a fnnet Layer, got {layer!r}{hint}")
    if layer.has_state:
        raise ValueError(f"Bidirectional({layer.name}): a layer with state (BatchNorm) is not "
                         f"supported; wrap the recurrent part only")
    name = f"Bidirectional({layer.name})"

    def init(key, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{name}: input_shape must be one sequence's (time, features), "
                             f"got {tuple(input_shape)}")
        k_f, k_b = jax.random.split(key)
        return {"forward": layer.init(k_f, input_shape), "backward": layer.init(k_b, input_shape)}

    def forward(params, x, key, state, run):
        if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
            raise ValueError(f"{name}: params must be {{'forward': ..., 'backward': ...}} (this "
                             f"layer's init), got {type(params).__name__}")
        _checks.floating(name, x)
        _checks.rank(name, x, 3, "(batch, time, features)", "For one sequence use x[None].")
        k_f, k_b = layer_keys(key, 2)
        y_f, res_f = run(0, params["forward"], x, k_f, None)
        y_r, res_b = run(1, params["backward"], jnp.flip(x, axis=1), k_b, None)
        if jnp.ndim(y_f) != 3 or y_f.shape[:2] != x.shape[:2]:
            raise ValueError(f"{name}: the wrapped layer must map (batch, time, in) to (batch, "
                             f"time, h) with the same time steps; it maps {_checks._fmt(x.shape)} "
                             f"to {_checks._fmt(jnp.shape(y_f))}")
        y = jnp.concatenate([y_f, jnp.flip(y_r, axis=1)], axis=-1)
        return y, (res_f, res_b, Static(y_f.shape[-1]))

    def backward(res, dy, back):
        res_f, res_b, h = res
        dp_f, dx_f = back(0, res_f, dy[..., :h.value])
        dp_b, dx_r = back(1, res_b, jnp.flip(dy[..., h.value:], axis=1))
        return {"forward": dp_f, "backward": dp_b}, dx_f + jnp.flip(dx_r, axis=1)

    # two children: the layer forward in time and its copy backward (own params each)
    graph = Graph("Bidirectional", (layer, layer), forward, backward,
                  params=lambda p: (p["forward"], p["backward"]),
                  residuals=lambda r: (r[0], r[1]))
    return combinator(name, init, graph)
