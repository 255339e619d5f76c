"""Mixed precision: compute in bfloat16 (or float16), keep float32 master weights.

::

    mp = fn.mixed_precision(net)                        # compute_dtype=jnp.bfloat16
    params = mp.init(key, (64,))                        # MixedPrecisionParams(params, loss_scale)
    opt = fn.optim.dynamic_loss_scale(fn.optim.adam(1e-3))
    params, state, history = fn.fit(mp, loss, opt, params, x, y, epochs=10)

``mixed_precision(model, compute_dtype)`` is a Layer whose params are
``MixedPrecisionParams(params, loss_scale)``: the model's params in their own
(master) dtype, float32, and a float32 scalar loss scale ``S`` (a power of 2).

Forward (``c`` = compute dtype)::

    p_c = cast(params, c);  x_c = cast(x, c)          (floating leaves only; ids stay int)
    y   = cast(model.fwd(p_c, x_c), output_dtype)     (float32: the loss runs in float32)

Backward, by hand (``S`` from the forward's residuals)::

    dy_c            = cast(dy * S, c)                  (loss scaling: the seed times S)
    dp_c, dx_c      = model.bwd(residuals, dy_c)       (the model's manual VJP, in c)
    dparams         = cast(dp_c, master dtype) / S     (unscaled in float32)
    dx              = cast(dx_c, x's dtype) / S
    d loss_scale    = 0                                (the output does not depend on S)

Multiplying by a power of two commutes with rounding, so up to underflow and
overflow in ``c`` this is exactly the VJP of the forward (the rounding of the
casts included): ``S`` only moves the cotangents of the backward into ``c``'s
range, where float16's would underflow (below 6e-8) without it. bfloat16 has
float32's exponent range, so for it the scale rarely matters; a gradient that
overflows shows up as inf/NaN after unscaling.

:func:`fnnet.optim.dynamic_loss_scale` owns ``S``: it skips a step whose
gradients are not finite and halves ``S``, doubles it after ``growth_interval``
finite steps, writes it into ``MixedPrecisionParams.loss_scale`` through its
update, and hands only ``params`` to the inner optimizer. Without it, a plain
optimizer sees ``loss_scale`` as a parameter whose gradient is 0 (it stays put,
except that weight decay would shrink it); the gradients stay correct, but
nothing skips a non-finite step.

Checking the gradients: in ``compute_dtype`` the manual and autodiff backward
agree to that dtype's precision (bfloat16: about 1e-2), and finite differences
of a bfloat16 function are noise. The float64 check of the wrapper's logic is
``fn.check_layer(mixed_precision(model, jnp.float64, output_dtype=jnp.float64),
params64, x64)`` under ``jax.enable_x64`` (the tests do this).

Layer state (BatchNorm): the wrapper is stateful when ``model`` is. The state
is built from the master params and kept in their dtype (float32 running
statistics); the forward reads it in ``c`` (inference), and the update runs in
the state's dtype from the batch statistics the ``c`` forward computed, so
``fit(mp, ..., state=fn.init_state(mp, params))`` works as for any stateful
model (*state in, state out*; see :mod:`fnnet.state`).

PyTorch equivalence: ``torch.autocast(dtype=torch.bfloat16)`` with a float32
model and ``torch.cuda.amp.GradScaler`` (init ``2**15`` here, growth 2,
backoff 0.5, interval 2000), except that every op of the model runs in ``c``
(autocast keeps some ops in float32) and the loss runs in ``output_dtype``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._checks import is_float
from .core import Graph, Layer, Static, combinator, meta
from .optim.loss_scale import MixedPrecisionParams
from .structure import recorded

__all__ = ["MixedPrecisionParams", "mixed_precision"]


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if is_float(a) else a, tree)


def _dtypes(tree):
    return Static(tuple(jnp.result_type(a).name for a in jax.tree.leaves(tree)))


@recorded
def mixed_precision(model: Layer, compute_dtype=jnp.bfloat16, *, output_dtype=jnp.float32,
                    loss_scale: float = 2.0 ** 15) -> Layer:
    """Run ``model`` in ``compute_dtype`` with master params in their own dtype.

    ``loss_scale`` is the initial scale of the backward's cotangents (a power of
    2 keeps the scaling exact); :func:`fnnet.optim.dynamic_loss_scale` adapts it.
    """
    name = f"mixed_precision({model.name}, {jnp.dtype(compute_dtype).name})"
    if not jnp.issubdtype(compute_dtype, jnp.floating):
        raise TypeError(f"{name}: compute_dtype must be a floating dtype, got {compute_dtype!r}")
    if not (isinstance(loss_scale, (int, float)) and 0 < loss_scale < float("inf")):
        raise ValueError(f"{name}: loss_scale must be a finite number > 0, got {loss_scale!r}")

    def init(key, input_shape):
        return MixedPrecisionParams(model.init(key, input_shape),
                                    jnp.asarray(loss_scale, jnp.float32))

    def forward(params, x, key, state, run):
        if not isinstance(params, MixedPrecisionParams):
            raise TypeError(f"{name}: params must be the MixedPrecisionParams(params, loss_scale) "
                            f"that this layer's init returns, got {type(params).__name__}; wrap "
                            f"existing params as fn.MixedPrecisionParams(params, jnp.float32(2**15))")
        y_c, res = run(0, _cast(params.params, compute_dtype), _cast(x, compute_dtype), key,
                       None if state is None else _cast(state, compute_dtype))   # state: read in c
        y = _cast(y_c, output_dtype)
        scale = jnp.asarray(params.loss_scale, jnp.float32)
        return y, (res, scale, _dtypes(params.params), _dtypes(x), _dtypes(y_c))

    def backward(res, dy, back):
        res, scale, p_dtypes, x_dtypes, y_dtypes = res
        dy_c = jax.tree.map(lambda d, t: (d * scale.astype(d.dtype)).astype(t) if is_float(d) else d,
                            dy, jax.tree.unflatten(jax.tree.structure(dy), y_dtypes.value))
        dp_c, dx_c = back(0, res, dy_c)

        def unscale(g, dtype):
            if g is None:
                return None
            wide = g.astype(jnp.promote_types(dtype, jnp.float32))
            return (wide / scale.astype(wide.dtype)).astype(dtype)

        dp_leaves, dp_def = jax.tree.flatten(dp_c)
        dparams = dp_def.unflatten([unscale(g, t) for g, t in zip(dp_leaves, p_dtypes.value)])
        dx_leaves, dx_def = jax.tree.flatten(dx_c, is_leaf=lambda a: a is None)
        dx = dx_def.unflatten([unscale(g, t) if g is not None and jnp.issubdtype(t, jnp.floating)
                               else g for g, t in zip(dx_leaves, x_dtypes.value)])
        return MixedPrecisionParams(dparams, jnp.zeros_like(scale)), dx

    graph = Graph("mixed_precision", (model,), forward, backward, params=lambda p: (p.params,),
                  residuals=lambda r: (r[0],), wrapper=True, output=0, additive=False)
    return combinator(name, init, graph, input_dtype=meta(model).input_dtype)
