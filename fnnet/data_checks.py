"""Checks of a concrete data set on the host, before anything compiles.

Inside a compiled run nothing can raise: an out-of-range label makes the loss
NaN, an out-of-range id gives NaN embedding rows, a NaN in ``x`` spreads through
the model, and a learning-rate schedule that returns NaN turns the params into
NaN. ``fit`` and ``evaluate`` hold the whole data set as concrete arrays, so
they check it first and raise a clear error instead of returning ``[nan, nan]``
(or an accuracy computed from NaN logits):

=====================  ===================================================  ==============
what                   rule                                                 error
=====================  ===================================================  ==============
non-finite ``x``/``y``  every float entry of ``x`` finite (and of ``y``,     ``ValueError``
                       for a built-in loss without a mask)
ids                    an input-facing layer that declares a check           ``ValueError``
                       (its record's ``check_input``: ``Embedding``'s
                       ``[0, num)``) runs it on the concrete ``x``
targets                a built-in loss's own target rule (class indices in   ``ValueError``
                       ``[0, k)``, hinge targets -1/+1), at unmasked
                       positions, ``k`` from the model's output shape
learning rate          the optimizer's learning-rate schedule finite and     ``ValueError``
                       >= 0 at every step of the run (``fit`` only)
=====================  ===================================================  ==============

The target rule is the loss's own (its ``parts`` function, compiled with zero
predictions: only the labels are read, nothing of the size of the logits is
formed), so these checks and the loss can never disagree. A hand-made loss
(:func:`fnnet.losses.named_loss`) has no declared rule and is not checked.
``train_step`` is not checked (it runs once per step; a host check would sync
every step): there, ``fit(debug=True)`` and :func:`fnnet.find_nonfinite` find
a NaN.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import _fmt
from .core import forward, meta
from .walk import input_layers

__all__ = ["check_dataset", "check_finite", "check_inputs", "check_targets", "check_schedule"]


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)


def check_finite(where: str, name: str, tree):
    """``ValueError`` if a float leaf of ``tree`` holds NaN or inf (counted on the device)."""
    for path, a in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not _is_float(a) or bool(jnp.all(jnp.isfinite(a))):
            continue
        a = np.asarray(a)
        bad = ~np.isfinite(a)
        kinds = ", ".join(k for k, m in (("NaN", np.isnan(a)), ("inf", np.isinf(a))) if m.any())
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        label, var = name + jax.tree_util.keystr(path), name.split()[-1]
        raise ValueError(
            f"{where}: {label} holds {int(bad.sum())} non-finite value(s) ({kinds}), the first "
            f"at index {first} (example {first[0] if first else 0}); the loss and every "
            f"gradient would be NaN (checked before compiling). Fix or drop those examples, "
            f"e.g. keep = jnp.isfinite({var}).all(axis=tuple(range(1, {var}.ndim)))."
        )


def check_inputs(where: str, model, x, name: str = "x"):
    """Run the concrete-input check of every input-facing layer that declares one
    (``named(..., check_input=check)``, e.g. ``Embedding``'s id range) on its part of
    ``x`` (:func:`fnnet.walk.input_layers`)."""
    for layer, xi in input_layers(model, x):
        check = meta(layer).check_input
        if check is None:
            continue
        try:
            check(xi)
        except ValueError as err:
            raise ValueError(f"{where}: {name} does not fit the model: {err} (checked before "
                             f"compiling; inside the compiled run these would be NaN rows)") from err


def _split_masked(fwd, y):
    if not fwd.masked:
        return y, None
    if hasattr(y, "mask") and hasattr(y, "target"):
        return y.target, y.mask
    if isinstance(y, (tuple, list)) and len(y) == 2:
        return tuple(y)
    return None, None


@partial(jax.jit, static_argnames=("fwd", "pred"))
def _bad_positions(target, mask, *, fwd, pred):
    """The positions whose target breaks ``fwd``'s rule (unmasked ones only), or None.

    The predictions are zeros made inside: only ``bad`` is returned, so XLA keeps
    nothing of the logits' size."""
    from .losses import _expand_mask

    zeros = jnp.zeros(pred.shape, pred.dtype)
    parts = fwd.parts(fwd.fnnet_name, zeros, target, **dict(fwd.settings))
    if parts.bad is None:
        return None
    bad, keep = parts.bad, parts.keep
    if mask is not None:
        m = _expand_mask(fwd.fnnet_name, mask, parts.loss.shape, zeros)
        keep = m if keep is None else m * keep.astype(m.dtype)
    return bad if keep is None else bad & (keep != 0)


def check_targets(where: str, model, loss, params, x, y, *, state=None, name: str = "y"):
    """``ValueError`` when a built-in loss's target rule fails at an unmasked position."""
    from .losses import _LossFwd

    fwd = loss.fwd
    if not isinstance(fwd, _LossFwd) or fwd.base not in ("softmax_cross_entropy", "hinge"):
        return                      # no target rule (or a hand-made loss): nothing to check
    target, mask = _split_masked(fwd, y)
    if target is None or (fwd.base == "softmax_cross_entropy"
                          and not jnp.issubdtype(jnp.result_type(target), jnp.integer)):
        return                      # probabilities: the loss checks their shape itself
    key = jax.random.key(0) if model.needs_key else None
    out = jax.eval_shape(lambda p, xx, s: forward(model, p, xx, key=key, state=s)[0],
                         params, x, state)
    if not hasattr(out, "shape"):
        return
    bad = _bad_positions(target, mask, fwd=fwd, pred=jax.ShapeDtypeStruct(out.shape, out.dtype))
    if bad is None or not bool(jnp.any(bad)):
        return
    bad = np.asarray(bad)
    values = np.unique(np.asarray(target)[bad])
    shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
    i = int(np.argwhere(bad)[0][0])
    # the loss's own rule, from its parts on that one example
    one_shape = (1, *out.shape[1:])
    rule = fwd.parts(fwd.fnnet_name, jnp.zeros(one_shape, out.dtype),
                     jax.tree.map(lambda a: a[i:i + 1], target), **dict(fwd.settings)).rule
    rule = rule.replace(_fmt(one_shape), _fmt(out.shape))
    raise ValueError(f"{where}: {name} holds {int(bad.sum())} invalid target(s) for "
                     f"{loss.name}: {rule}; got values {{{shown}}}, the first in example {i}. "
                     f"Fix the targets, or mask those positions (fn.losses.masked). Checked "
                     f"before compiling: inside the compiled run the loss would be NaN.")


def check_schedule(where: str, optimizer, steps: int):
    """``ValueError`` when an fnnet optimizer's learning-rate schedule is NaN, inf or
    negative at a step in ``[0, steps)`` (the steps of the run)."""
    from .optim.base import _find_learning_rate
    from .optim.recipe import Recipe, rebuild, recipe_of
    from .core import Static

    recipe = recipe_of(optimizer)
    lr = None if recipe is None else _find_learning_rate(recipe)
    lr = rebuild(lr) if isinstance(lr, Recipe) else lr.value if isinstance(lr, Static) else lr
    if not callable(lr) or steps < 1:
        return
    values = np.asarray(jax.vmap(lr)(jnp.arange(steps, dtype=jnp.int32)))
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        s = int(np.argmax(bad))
        raise ValueError(f"{where}: the learning-rate schedule {getattr(lr, '__name__', lr)!r} "
                         f"returns {values[s]} at step {s} (of the {steps} steps of this run): "
                         f"the params would become NaN (or move uphill). Fix the schedule so it "
                         f"is finite and >= 0 at every step.")


def check_dataset(where: str, model, loss, params, x, y, *, state=None, validation=False):
    """All the checks of this module but the schedule's, for one data set."""
    from .losses import _LossFwd

    prefix = "validation " if validation else ""
    check_finite(where, prefix + "x", x)
    check_inputs(where, model, x, prefix + "x")
    check_targets(where, model, loss, params, x, y, state=state, name=prefix + "y")
    if isinstance(loss.fwd, _LossFwd) and not loss.fwd.masked:
        # (a masked loss never reads its masked targets: NaN padding there is fine, and
        # a hand-made loss may give NaN targets a meaning of its own)
        check_finite(where, prefix + "y", y)
