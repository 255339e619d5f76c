"""Dynamic loss scaling for :func:`fnnet.mixed_precision` models; skips non-finite steps.

::

    mp = fn.mixed_precision(net)                                  # bfloat16 compute
    opt = fn.optim.dynamic_loss_scale(fn.optim.adam(1e-3))

Each update (``S`` = the current scale, ``g`` = the gradients, already unscaled
by the model's backward)::

    finite = all(isfinite(g))                  (over every leaf)
    finite:      u = inner(g);  good += 1;  if good == growth_interval: S *= growth_factor, good = 0
    not finite:  u = 0 (params unchanged), inner state unchanged, skipped += 1, good = 0,
                 S = max(S * backoff_factor, min_scale)

``S`` is written into every ``MixedPrecisionParams.loss_scale`` of the params
through the update (``u = S_new - S_param`` on that leaf, exact for powers of
2), and the inner optimizer sees only the ``MixedPrecisionParams.params``
parts (its state, weight decay and clipping never touch the scale). Params
without a mixed-precision model are handled too: the transform then only skips
non-finite steps. The state is ``DynamicLossScaleState(loss_scale, good_steps,
skipped, inner_state)``; ``skipped`` counts the steps skipped so far.
Defaults as ``torch.cuda.amp.GradScaler``: initial ``2**15`` (taken from the
params' ``loss_scale`` when there is one), growth 2 every 2000 finite steps,
backoff 0.5; here ``S`` never falls below ``min_scale`` (1) and never grows to inf.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _validate
from .base import Optimizer, check_optimizer, recorded
from ._trees import check_state

__all__ = ["DynamicLossScaleState", "MixedPrecisionParams", "dynamic_loss_scale"]


class MixedPrecisionParams(NamedTuple):
    """A :func:`fnnet.mixed_precision` model's (master) params and the float32 loss scale of
    its backward: the scale is optimizer-owned data, so its type lives here (the
    model wrapper imports it from the optimizers, never the other way)."""

    params: object
    loss_scale: jax.Array


class DynamicLossScaleState(NamedTuple):
    """Current scale (float32), finite steps since the last change and total skipped (int32)."""

    loss_scale: jax.Array
    good_steps: jax.Array
    skipped: jax.Array
    inner_state: object


def _is_mp(x) -> bool:
    return isinstance(x, MixedPrecisionParams)


def _split(tree):
    """``(leaves, treedef)`` with every MixedPrecisionParams node as one leaf."""
    return jax.tree.flatten(tree, is_leaf=_is_mp)


def _strip(leaves, treedef):
    return treedef.unflatten([l.params if _is_mp(l) else l for l in leaves])


@recorded
def dynamic_loss_scale(inner: Optimizer, *, initial_scale: float | None = None,
                       growth_interval: int = 2000, growth_factor: float = 2.0,
                       backoff_factor: float = 0.5, min_scale: float = 1.0) -> Optimizer:
    """Wrap ``inner``: skip non-finite steps and adapt the loss scale of mixed-precision params."""
    where = "dynamic_loss_scale"
    check_optimizer(inner, where)
    if initial_scale is not None:
        _validate.positive(where, "initial_scale", initial_scale)
    _validate.count(where, "growth_interval", growth_interval)
    _validate.at_least(where, "growth_factor", growth_factor, 1.0)
    _validate.open_interval(where, "backoff_factor", backoff_factor, 0.0, 1.0)
    _validate.positive(where, "min_scale", min_scale)

    def init(params):
        leaves, treedef = _split(params)
        scales = [l.loss_scale for l in leaves if _is_mp(l)]
        s0 = initial_scale if initial_scale is not None else scales[0] if scales else 2.0 ** 15
        zero = jnp.zeros((), jnp.int32)
        return DynamicLossScaleState(jnp.asarray(s0, jnp.float32), zero, zero,
                                     inner.init(_strip(leaves, treedef)))

    def update(updates, state, params=None):
        check_state(where, state, DynamicLossScaleState, updates)
        u_leaves, u_def = _split(updates)
        has_mp = any(_is_mp(l) for l in u_leaves)
        if has_mp and params is None:
            raise ValueError(f"{where}: mixed-precision params need update(grads, state, params) "
                             f"(the loss scale is set through the params)")
        p_leaves = None
        if params is not None:
            p_leaves, p_def = _split(params)
            if p_def != u_def:
                raise ValueError(f"{where}: updates and params differ: expected the tree {p_def}, "
                                 f"got {u_def}")
        grads = _strip(u_leaves, u_def)
        inner_params = None if params is None else _strip(p_leaves, u_def)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
                                   or [jnp.array(True)]))

        def step(_):
            return inner.update(grads, state.inner_state, inner_params)

        def skip(_):
            return jax.tree.map(jnp.zeros_like, grads), state.inner_state

        out, inner_state = jax.lax.cond(finite, step, skip, None)
        out = jax.tree.map(lambda o, g: o.astype(g.dtype), out, grads)

        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= growth_interval
        grown = state.loss_scale * growth_factor
        scale = jnp.where(finite,
                          jnp.where(grow & jnp.isfinite(grown), grown, state.loss_scale),
                          jnp.maximum(state.loss_scale * backoff_factor, min_scale))
        good = jnp.where(grow, 0, good).astype(jnp.int32)
        skipped = state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32)

        out_parts = u_def.flatten_up_to(out)
        merged = [MixedPrecisionParams(o, (scale - p.loss_scale).astype(p.loss_scale.dtype))
                  if _is_mp(u) else o for u, o, p in zip(u_leaves, out_parts, p_leaves or u_leaves)]
        return u_def.unflatten(merged), DynamicLossScaleState(scale, good, skipped, inner_state)

    return Optimizer(init, update)
