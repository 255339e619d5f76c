"""Recurrent layers: ``SimpleRNN``, ``LSTM``, ``GRU``, with backpropagation through time.

Shapes: ``x (batch, T, in)``, output every hidden state ``y (batch, T, h)``; the
initial state is zeros. ``G`` gates per cell (1, 4, 3); params
``{"w_ih": (in, G h), "w_hh": (h, G h), "b_ih": (G h,), "b_hh": (G h,)}``.

**Forward.** The input projection does not depend on the recurrence, so it runs
for ALL steps as one big matmul before the loop; only the ``h @ w_hh`` product is
sequential (a ``lax.scan`` over time)::

    X = x @ w_ih + b_ih                       (batch, T, G h)      one matmul
    for t = 1..T:   H_t = h_{t-1} @ w_hh + b_hh,   (h_t, c_t) = cell(X_t, H_t, h_{t-1}, c_{t-1})

The cells (``s = sigmoid``; PyTorch's equations and gate orders)::

    SimpleRNN   h' = tanh(X + H)
    LSTM        i, f, g, o = s(X_i + H_i), s(X_f + H_f), tanh(X_g + H_g), s(X_o + H_o)
                c' = f c + i g,      h' = o tanh(c')
    GRU         r, z = s(X_r + H_r), s(X_z + H_z),   n = tanh(X_n + r H_n)
                h' = (1 - z) n + z h

**Backward (BPTT).** A reverse ``lax.scan`` carries the cotangents of the state
(``dh``, and ``dc`` for the LSTM). At step ``t``, with ``e = dy_t + dh`` (the
output's own cotangent plus what step ``t + 1`` sent back), each cell gives the
cotangents of its pre-activations, ``dX_t`` (w.r.t. ``X_t``) and ``dH_t``
(w.r.t. ``H_t``), and the state cotangents it sends to step ``t - 1``::

    SimpleRNN   dX = dH = e (1 - h'^2)                         dh_prev = dH @ w_hh^T
    LSTM        dc = dc_next + e o (1 - tanh(c')^2)
                dX = dH = [dc g i(1-i),  dc c f(1-f),  dc i (1-g^2),  e tanh(c') o(1-o)]
                          (blocks i, f, g, o)                  dc_prev = dc f
                                                               dh_prev = dH @ w_hh^T
    GRU         dn = e (1 - z) (1 - n^2),   dz = e (h - n) z (1 - z),   dr = dn H_n r (1 - r)
                dX = [dr, dz, dn],   dH = [dr, dz, dn r]       dh_prev = dH @ w_hh^T + e z

(``h``, ``c`` above are the state entering step ``t``.) Only ``dh_prev`` needs the
loop; every weight gradient is ONE matmul over all steps after it::

    dw_ih = sum_{b,t} x^T dX      db_ih = sum_{b,t} dX       dx = dX @ w_ih^T
    dw_hh = sum_{b,t} h_{t-1}^T dH                            db_hh = sum_{b,t} dH

Layout: internally time-major. ``x`` is transposed once (its ``in`` features are
narrower than the ``G h``-wide projections), so each step reads a contiguous
slice and the weight gradients are plain 2-d matmuls over ``(T batch)`` rows,
never a transpose of the wide ``X`` / ``dX``.

Residuals, saved by the forward scan and nothing recomputed: the input ``x``
(time-major), the hidden states, the kernels, and per step the cell's activations (LSTM: the
four gates, ``c_{t-1}`` and ``tanh(c_t)``; GRU: ``r, z, n, H_n``; SimpleRNN:
nothing beyond ``h_t``).

PyTorch: ``nn.RNN`` (tanh) / ``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``
and one layer give the same numbers with ``weight_ih_l0 = w_ih.T``,
``weight_hh_l0 = w_hh.T``, ``bias_ih_l0 = b_ih``, ``bias_hh_l0 = b_hh``; the
default init is PyTorch's too, ``U(-1/sqrt(h), 1/sqrt(h))`` for all four.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .. import _checks
from ..core import Layer, Static, named
from ..structure import recorded

SEQ = "(batch, time, features)"
SEQ_HINT = "For one sequence use x[None]; for time-major data use x.swapaxes(0, 1)."


class Cell(NamedTuple):
    """One recurrent cell: ``gates`` blocks of ``h`` in the projections.

    ``fwd(X_t, H_t, state) -> (new_state, res_t)`` where ``state = (h,)`` or
    ``(h, c)``; ``bwd(res_t, h_t, h_prev, e, dstate_rest) -> (dX, dH or None,
    dh_direct or None, dstate_rest_prev)`` with ``e`` the cotangent of ``h_t``;
    ``dH=None`` means ``dH = dX``.
    """

    gates: int
    extra_state: int           # state arrays besides h (LSTM: 1, the cell c)
    fwd: Callable
    bwd: Callable
    needs_h: bool = False          # bwd reads the new hidden state h_t (SimpleRNN)
    needs_h_prev: bool = False     # bwd reads the state entering the step (GRU)


def _split(a, n):
    return jnp.split(a, n, axis=-1)


# --- SimpleRNN ------------------------------------------------------------------------

def _rnn_fwd(X, H, state):
    h = jnp.tanh(X + H)
    return (h,), ()


def _rnn_bwd(res, h, h_prev, e, drest):
    return e * (1 - h * h), None, None, ()


# --- LSTM -----------------------------------------------------------------------------

def _lstm_fwd(X, H, state):
    _, c = state
    ai, af, ag, ao = _split(X + H, 4)
    i, f, g, o = jax.nn.sigmoid(ai), jax.nn.sigmoid(af), jnp.tanh(ag), jax.nn.sigmoid(ao)
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    return (o * tc, c_new), (i, f, g, o, c, tc)


def _lstm_bwd(res, h, h_prev, e, drest):
    i, f, g, o, c, tc = res
    (dc_next,) = drest
    dc = dc_next + e * o * (1 - tc * tc)
    dX = jnp.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                          e * tc * o * (1 - o)], axis=-1)
    return dX, None, None, (dc * f,)


# --- GRU ------------------------------------------------------------------------------

def _gru_fwd(X, H, state):
    (h,) = state
    xr, xz, xn = _split(X, 3)
    hr, hz, hn = _split(H, 3)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,), (r, z, n, hn)


def _gru_bwd(res, h, h_prev, e, drest):
    r, z, n, hn = res
    dn = e * (1 - z) * (1 - n * n)
    dz = e * (h_prev - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    return (jnp.concatenate([dr, dz, dn], axis=-1), jnp.concatenate([dr, dz, dn * r], axis=-1),
            e * z, ())


CELLS = {
    "SimpleRNN": Cell(1, 0, _rnn_fwd, _rnn_bwd, needs_h=True),
    "LSTM": Cell(4, 1, _lstm_fwd, _lstm_bwd),
    "GRU": Cell(3, 0, _gru_fwd, _gru_bwd, needs_h_prev=True),
}


# --- the shared machinery: forward scan, reverse (BPTT) scan ---------------------------

def _check_input(name, x, n_in):
    _checks.floating(name, x)
    _checks.rank(name, x, 3, f"{SEQ}", SEQ_HINT)
    _checks.last_axis(name, x, n_in, f"its kernel w_ih of shape ({n_in}, ...)")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: got an empty {'batch' if x.shape[0] == 0 else 'sequence'} "
                         f"(input shape {_checks._fmt(x.shape)}); need at least one example "
                         f"and one time step.")


def recurrent(kind: str, hidden: int, *, unroll: int = 1, dtype=jnp.float32) -> Layer:
    """A recurrent layer of ``kind`` (a key of :data:`CELLS`) with ``hidden`` units."""
    cell = CELLS[kind]
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0:
        raise ValueError(f"{kind}: hidden must be a positive int, got {hidden!r}")
    if not isinstance(unroll, int) or isinstance(unroll, bool) or unroll < 1:
        raise ValueError(f"{kind}: unroll must be a positive int, got {unroll!r}")
    name = f"{kind}({hidden})"
    gh = cell.gates * hidden

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must be one sequence's (time, features), "
                             f"got {tuple(input_shape)}")
        bound = 1.0 / math.sqrt(hidden)
        shapes = {"w_ih": (input_shape[-1], gh), "w_hh": (hidden, gh), "b_ih": (gh,),
                  "b_hh": (gh,)}
        keys = jax.random.split(key, 4)
        return {k: jax.random.uniform(kk, s, dtype, -bound, bound)
                for kk, (k, s) in zip(keys, shapes.items())}

    # forward and backward are each ONE jitted function: inside a user's jit they are
    # inlined (no extra compile); called eagerly they run as one compiled program
    # instead of dozens of op-by-op dispatches
    @jax.jit
    def forward(params, x):
        w_ih, w_hh, b_ih, b_hh = (params[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh"))
        dt = jnp.result_type(x, w_ih)
        # time-major for the scan; the input (in features) is transposed, never the
        # (G h)-wide projection; then every step's projection is ONE matmul
        xs = jnp.swapaxes(x, 0, 1).astype(dt)
        X = xs @ w_ih.astype(dt) + b_ih
        w_hh_, b_hh_ = w_hh.astype(dt), b_hh.astype(dt)
        zero = jnp.zeros((x.shape[0], hidden), dt)
        state0 = (zero,) * (1 + cell.extra_state)

        def step(state, X_t):
            new_state, res_t = cell.fwd(X_t, state[0] @ w_hh_ + b_hh_, state)
            return new_state, (new_state[0], res_t)

        _, (hs, cell_res) = lax.scan(step, state0, X, unroll=unroll)
        return jnp.swapaxes(hs, 0, 1), (xs, hs, cell_res, w_ih, w_hh)

    def fwd(params, x, *, key=None):
        _check_input(name, x, params["w_ih"].shape[0])
        y, res = forward(params, x)
        return y, (*res, Static(jnp.result_type(x)))

    @jax.jit
    def backward(res, dy):
        xs, hs, cell_res, w_ih, w_hh = res
        dt = hs.dtype
        dys = jnp.swapaxes(dy, 0, 1).astype(dt)
        w_hh_t = w_hh.astype(dt).T
        # the state entering each step (zeros first): the GRU's backward reads it, and
        # dw_hh is one matmul over it (shifting the h-wide states, never the G h-wide dH)
        h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
        dstate0 = (jnp.zeros_like(hs[0]),) * (1 + cell.extra_state)

        def step(dstate, inputs):
            res_t, dy_t, h_t, hp_t = inputs
            e = dy_t + dstate[0]
            dX, dH, dh_direct, drest = cell.bwd(res_t, h_t, hp_t, e, dstate[1:])
            dH_ = dX if dH is None else dH
            dh_prev = dH_ @ w_hh_t
            if dh_direct is not None:
                dh_prev = dh_prev + dh_direct
            return (dh_prev, *drest), (dX, dH)

        _, (dX, dH) = lax.scan(step, dstate0, (cell_res, dys, hs if cell.needs_h else None,
                                               h_prev if cell.needs_h_prev else None),
                               reverse=True, unroll=unroll)
        dH = dX if dH is None else dH
        # the weight gradients: one matmul each over all (time, batch) positions, on
        # time-major arrays flattened to 2-d (no transposes of the wide dX)
        rows = lambda a: a.reshape(-1, a.shape[-1])
        dw_ih = rows(xs).T @ rows(dX)
        dw_hh = rows(h_prev).T @ rows(dH)
        dx = jnp.swapaxes(dX @ w_ih.astype(dt).T, 0, 1)
        dparams = {"w_ih": dw_ih, "w_hh": dw_hh, "b_ih": dX.sum(axis=(0, 1)),
                   "b_hh": dH.sum(axis=(0, 1))}
        return {k: v.astype(w_ih.dtype) for k, v in dparams.items()}, dx

    def bwd(res, dy):
        dparams, dx = backward(res[:-1], dy)
        return dparams, dx.astype(res[-1].value)

    return named(name, init, fwd, bwd)


@recorded
def SimpleRNN(hidden: int, *, unroll: int = 1, dtype=jnp.float32) -> Layer:
    """Elman RNN ``h' = tanh(x w_ih + b_ih + h w_hh + b_hh)``; = ``nn.RNN(batch_first=True)``.

    Input ``(batch, time, in)``, output every hidden state ``(batch, time, hidden)``.
    ``unroll``: steps per iteration of the compiled loop (a speed knob, same numbers).
    """
    return recurrent("SimpleRNN", hidden, unroll=unroll, dtype=dtype)


@recorded
def LSTM(hidden: int, *, unroll: int = 1, dtype=jnp.float32) -> Layer:
    """LSTM, gate order i, f, g, o; = ``nn.LSTM(batch_first=True)`` with transposed weights.

    Input ``(batch, time, in)``, output every hidden state ``(batch, time, hidden)``.
    """
    return recurrent("LSTM", hidden, unroll=unroll, dtype=dtype)


@recorded
def GRU(hidden: int, *, unroll: int = 1, dtype=jnp.float32) -> Layer:
    """GRU, gate order r, z, n, ``n = tanh(x W_in + b_in + r (h W_hn + b_hn))``;
    = ``nn.GRU(batch_first=True)`` with transposed weights.

    Input ``(batch, time, in)``, output every hidden state ``(batch, time, hidden)``.
    """
    return recurrent("GRU", hidden, unroll=unroll, dtype=dtype)
