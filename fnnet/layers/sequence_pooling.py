"""Sequence pooling: from every time step ``(batch, T, ...)`` to one vector per sequence.

Parameter-free layers (params ``()``) for the end of a sequence model (an LSTM
classifier: ``serial(Embedding, LSTM(h), LastStep, Dense(k))``). ``x`` is
``(batch, T, ...)`` (batch-first, time on axis 1, any feature axes after it);
the output drops the time axis, ``(batch, ...)``:

===============  ==============================================  =====================================
layer            forward y                                       backward dx
===============  ==============================================  =====================================
SelectStep(i)    x[:, i]  (``i < 0`` counts from the end)        dx[:, i] = dy, zero elsewhere
LastStep         x[:, -1]  (= ``SelectStep(-1)``)                dx[:, -1] = dy, zero elsewhere
MeanOverTime()   sum_t x_t / T                                   dx_t = dy / T
  with a mask    sum_t w_t x_t / W,  W = sum_t w_t               dx_t = w_t dy / W
                                                                 dw_t = dy . (x_t - y) / W  (float w)
MaxOverTime()    x[:, t*],  t* = first argmax_t (per feature)    dx[:, t*] = dy, zero elsewhere
  with a mask    t* over the unmasked steps only                 dw = 0 (float w)
===============  ==============================================  =====================================

**Masks** (padded batches of sequences of different lengths). The pooling-over-time
layers take either ``x`` or the TUPLE ``(x, mask)``, like every fnnet layer with
several inputs (graphs pass tuples): ``mask`` is ``(batch, T)``, one entry per
step, shared by the features. A bool or integer mask SELECTS steps (nonzero =
kept; a masked step is never read, so padding may hold anything, NaN included)
and gets the cotangent ``None`` like any integer input. A float mask holds
WEIGHTS ``w_t`` (0/1 weights give the same masked mean): MeanOverTime is then the
weighted mean, differentiable in ``w`` (the ``dw`` above), and MaxOverTime uses
``w_t != 0`` as the selection (``dw = 0``: a selection has no slope). A sequence
whose every step is masked (``W = 0``) gives ``y = 0`` and zero gradients, like an
all-masked batch of ``fn.losses.masked``. A mask usually rides along the model
beside the data: ``x = (ids, mask)`` into ``parallel(serial(Embedding, LSTM),
Identity)`` (``Identity`` passes the mask on), then ``MeanOverTime()``.

**Ties and NaN.** MaxOverTime sends the whole gradient to the FIRST maximal step
(``jnp.argmax``), and its forward gathers at that argmax, so ``jax.grad`` of the
forward routes ties the same way; a NaN step is the maximum (``argmax`` ranks NaN
first), so a NaN input stays NaN, as in MaxPool2D.

PyTorch (on the ``(batch, T, features)`` output of a ``batch_first`` RNN):
``LastStep`` is ``out[:, -1]``, ``SelectStep(i)`` ``out[:, i]``, ``MeanOverTime()``
``out.mean(1)`` (masked: ``(out * m[..., None]).sum(1) / m.sum(1, keepdim=True)``),
``MaxOverTime()`` ``out.max(1).values`` (same gradient when there are no ties).

Residuals: SelectStep ``Static((shape, dtype, i))``; MeanOverTime ``Static`` of the
shape (no mask) or the mask weights, their sum and the input (a float mask needs
``x - y`` for ``dw``); MaxOverTime the argmax ``(batch, ...)`` and whether each
sequence had an unmasked step.
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import _checks
from ..core import Layer, Static, named, no_params
from ..structure import recorded

SEQ = "(batch, time, ...)"


def _split_input(name: str, x, masked_ok: bool = True):
    """``(x, mask or None)`` from ``x`` or ``(x, mask)``, checked."""
    mask = None
    if isinstance(x, (tuple, list)):
        if not masked_ok or len(x) != 2:
            what = "a tuple (x, mask)" if masked_ok else "one array"
            raise ValueError(f"{name}: expected {what} of shape {SEQ}, got a tuple of "
                             f"{len(x)} entries")
        x, mask = x
    _checks.floating(name, x)
    if jnp.ndim(x) < 3:
        raise ValueError(f"{name}: expected a batched sequence {SEQ} (time on axis 1), got "
                         f"shape {_checks._fmt(jnp.shape(x))}. For one sequence use x[None]; "
                         f"a (batch, features) input has no time axis to pool over.")
    if x.shape[1] == 0:
        raise ValueError(f"{name}: got an empty sequence (input shape "
                         f"{_checks._fmt(x.shape)}); need at least one time step.")
    if mask is not None:
        dtype = jnp.result_type(mask)
        if not (jnp.issubdtype(dtype, jnp.bool_) or jnp.issubdtype(dtype, jnp.number)):
            raise TypeError(f"{name}: the mask must be bool, integer or float, got {dtype}")
        if jnp.shape(mask) != x.shape[:2]:
            raise ValueError(f"{name}: mask shape {_checks._fmt(jnp.shape(mask))} must be the "
                             f"input's (batch, time) = {_checks._fmt(x.shape[:2])} (one entry per "
                             f"step; fnnet never broadcasts a mask silently)")
    return x, mask


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)


def _per_example(v, ndim: int):
    """``v (batch,)`` shaped to broadcast against an array of ``ndim`` axes."""
    return v.reshape(v.shape + (1,) * (ndim - 1))


def _per_step(w, x):
    """``w (batch, T)`` shaped to broadcast against ``x (batch, T, ...)``."""
    return w.reshape(w.shape + (1,) * (x.ndim - 2))


# --- SelectStep / LastStep ------------------------------------------------------------

def _select(name: str, i: int) -> Layer:
    def fwd(params, x, *, key=None):
        x, _ = _split_input(name, x, masked_ok=False)
        t = x.shape[1]
        if not -t <= i < t:
            raise ValueError(f"{name}: step {i} is out of range for sequences of {t} steps "
                             f"(input shape {_checks._fmt(x.shape)}); use -{t} <= i < {t}")
        return x[:, i], Static((x.shape, x.dtype, i % t))

    def bwd(res, dy):
        shape, dtype, t = res.value
        return (), jnp.zeros(shape, dtype).at[:, t].set(dy.astype(dtype))

    return named(name, no_params, fwd, bwd)


@recorded
def SelectStep(i: int) -> Layer:
    """Step ``i`` of every sequence: ``(batch, T, ...) -> (batch, ...)``; ``i < 0``
    counts from the end (``SelectStep(-1)`` is :data:`LastStep`)."""
    if not isinstance(i, int) or isinstance(i, bool):
        raise TypeError(f"SelectStep: i must be an int (a time step), got {i!r}")
    return _select(f"SelectStep({i})", i)


LastStep = _select("LastStep", -1)


# --- MeanOverTime ---------------------------------------------------------------------

@recorded
def MeanOverTime() -> Layer:
    """The mean over the time axis, ``(batch, T, ...) -> (batch, ...)``; the input may
    be ``(x, mask)`` with a ``(batch, T)`` mask (bool/int: select; float: weights)."""
    name = "MeanOverTime()"

    def fwd(params, x, *, key=None):
        x, mask = _split_input(name, x)
        if mask is None:
            return jnp.mean(x, axis=1), Static((x.shape, x.dtype))
        w = jnp.asarray(mask).astype(x.dtype)
        total = jnp.sum(w, axis=1)                         # W, (batch,)
        some = total != 0
        inv = jnp.where(some, 1 / jnp.where(some, total, 1), 0)     # 1 / W, 0 when W = 0
        wx = _per_step(w, x) * x
        weights = _is_float(mask)
        if not weights:            # a selection: masked steps are never read (NaN padding)
            wx = jnp.where(_per_step(w, x) != 0, wx, 0)
        y = jnp.sum(wx, axis=1) * _per_example(inv, x.ndim - 1)
        # dw needs x - y (float weights only)
        return y, (w, inv, x if weights else None, y if weights else None,
                   Static((x.shape, x.dtype, jnp.result_type(mask))))

    def bwd(res, dy):
        if isinstance(res, Static):
            shape, dtype = res.value
            return (), jnp.broadcast_to((dy / shape[1])[:, None], shape).astype(dtype)
        w, inv, x, y, meta = res
        shape, dtype, mask_dtype = meta.value
        g = dy * _per_example(inv, dy.ndim)                   # dy / W (0 when W = 0)
        dx = jnp.broadcast_to(w.reshape(shape[:2] + (1,) * (len(shape) - 2)) * g[:, None],
                              shape).astype(dtype)
        if x is None:
            return (), (dx, None)
        dw = jnp.sum((x - y[:, None]) * g[:, None], axis=tuple(range(2, len(shape))))
        return (), (dx, dw.astype(mask_dtype))

    return named(name, no_params, fwd, bwd)


# --- MaxOverTime ----------------------------------------------------------------------

@recorded
def MaxOverTime() -> Layer:
    """The maximum over the time axis per feature, ``(batch, T, ...) -> (batch, ...)``;
    ties go to the first maximal step. The input may be ``(x, mask)`` (masked steps
    are never the maximum; a float mask selects its nonzero steps)."""
    name = "MaxOverTime()"

    def fwd(params, x, *, key=None):
        x, mask = _split_input(name, x)
        if mask is None:
            idx = jnp.argmax(x, axis=1)
            y = jnp.take_along_axis(x, idx[:, None], axis=1)[:, 0]
            return y, (idx, None, Static((x.shape, x.dtype, None)))
        on = _per_step(jnp.asarray(mask) != 0, x)
        idx = jnp.argmax(jnp.where(on, x, -jnp.inf), axis=1)
        any_on = jnp.any(on, axis=1)                         # (batch, 1, ...) -> (batch, ...)
        y = jnp.where(any_on, jnp.take_along_axis(x, idx[:, None], axis=1)[:, 0], 0)
        mask_dtype = jnp.result_type(mask) if _is_float(mask) else None
        return y.astype(x.dtype), (idx, any_on, Static((x.shape, x.dtype, mask_dtype or "int")))

    def bwd(res, dy):
        idx, any_on, meta = res
        shape, dtype, mask_dtype = meta.value
        g = dy if any_on is None else jnp.where(any_on, dy, 0)
        steps = jnp.arange(shape[1]).reshape((1, shape[1]) + (1,) * (len(shape) - 2))
        dx = jnp.where(steps == idx[:, None], g[:, None], 0).astype(dtype)
        if mask_dtype is None:
            return (), dx
        dw = None if mask_dtype == "int" else jnp.zeros(shape[:2], mask_dtype)
        return (), (dx, dw)

    return named(name, no_params, fwd, bwd)
