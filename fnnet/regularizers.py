"""Regularizers: a penalty on the params added to the loss, with a hand-written gradient.

``fn.l2(lam)`` is the L2 term ``lam * sum(w ** 2)`` over the selected params::

    value = lam * sum_i sum(w_i ** 2)          (over the leaves the mask selects)
    grad  = 2 * lam * w_i                      (selected leaves; 0 elsewhere)

``value_and_grad``, ``train_step`` and ``fit`` take ``regularizer=fn.l2(1e-4)``:
the value is added to the loss and the gradient to the model's gradients
(``method="autodiff"`` differentiates the value with ``jax.grad`` instead, the
referee of the hand-written rule). In PyTorch terms: ``loss + lam * sum(p.pow(2)
.sum() for p in selected)``, which equals SGD's ``weight_decay = 2 * lam`` on
those params.

``mask`` chooses the params:

* ``"kernels"`` (default): the leaves :func:`fnnet.optim.kernel_mask` marks, fnnet's
  one definition of a kernel (named ``"w"``, ``"w_*"`` or ``"table"``: Dense and
  Conv kernels, recurrent and attention matrices, embedding tables), sparing
  biases and normalisation scales, as weight decay usually does;
* ``"all"``: every floating-point leaf (micrograd's demo: ``alpha * sum(p * p)``);
* a pytree of bools with the params' structure, or a function ``params -> mask``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from ._checks import is_float
from .optim.masking import kernel_mask
from .structure import recorded

__all__ = ["Regularizer", "l2", "add_regularizer"]


class Regularizer(NamedTuple):
    """``value(params) -> scalar``; ``grad(params) -> grads`` (params' tree), by hand."""

    value: Callable[[Any], jax.Array]
    grad: Callable[[Any], Any]
    name: str

    recipe_field = "value"   # the l2(...) call that built it (its identity) is recorded there


def _mask_of(mask, params, where: str):
    if mask == "kernels":
        return kernel_mask(params)
    if mask == "all":
        return jax.tree.map(is_float, params)
    tree = mask(params) if callable(mask) else mask
    want, got = jax.tree.structure(params), jax.tree.structure(tree)
    if want != got:
        raise ValueError(f"{where}: the mask's tree differs from the params' tree; pass a mask "
                         f"built from the params, e.g. jax.tree.map(lambda p: p.ndim >= 2, "
                         f"params) (params: {want}; mask: {got})")
    bad = [leaf for leaf in jax.tree.leaves(tree) if not isinstance(leaf, bool)]
    if bad:
        raise ValueError(f"{where}: mask leaves must be Python bools (True: regularize), got "
                         f"{type(bad[0]).__name__}")
    return tree


@recorded
def l2(lam: float, *, mask="kernels") -> Regularizer:
    """The L2 penalty ``lam * sum(w ** 2)`` over the params ``mask`` selects (see above)."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) \
            or lam < 0:
        raise ValueError(f"l2: lam must be a finite number >= 0, got {lam!r}")
    if not (mask in ("kernels", "all") if isinstance(mask, str) else True):
        raise ValueError(f"l2: mask must be 'kernels', 'all', a pytree of bools or a function "
                         f"params -> mask, got {mask!r}")
    name = f"l2({lam:g})"

    def value(params):
        m = _mask_of(mask, params, name)
        terms = [jnp.sum(jnp.square(p)) for p, on in zip(jax.tree.leaves(params),
                                                          jax.tree.leaves(m)) if on]
        total = sum(terms) if terms else jnp.zeros((), jnp.float32)
        return lam * total

    def grad(params):
        m = _mask_of(mask, params, name)
        return jax.tree.map(lambda p, on: (2 * lam * p).astype(jnp.result_type(p)) if on
                            else jnp.zeros_like(p), params, m)

    value.__name__ = grad.__name__ = name
    return Regularizer(value, grad, name)


def add_regularizer(regularizer: Regularizer | None, params, value, grads):
    """``(value + R(params), grads + dR/dparams)`` with the hand-written gradient."""
    if regularizer is None:
        return value, grads
    r = regularizer.value(params)
    return ((value + r).astype(value.dtype),
            jax.tree.map(lambda g, d: (g + d).astype(g.dtype), grads, regularizer.grad(params)))
