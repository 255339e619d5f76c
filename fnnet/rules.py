"""Learning rules other than backprop: layers whose backward is NOT the true VJP, on purpose.

Each wrapper keeps a layer's forward and replaces its backward. Such a layer
says in its record (``named(..., rule=, true_bwd=)``, read with
:func:`fnnet.core.meta`) the rule's name (read by :func:`fnnet.check_grads`,
:func:`fnnet.check_layer` and :func:`fnnet.gradient_diagnostics`, which report
the difference as intended, not as a failure) and ``true_bwd`` (the true VJP,
used to measure how far the rule's updates are from the gradient).

==========================  =======================  ===========================  ==============
rule                        forward                  backward (the rule)          true backward
==========================  =======================  ===========================  ==============
feedback_alignment(Dense)   y = x W + b              dW = x^T dy, db = sum dy,    dx = dy W^T
                                                     dx = dy B^T (B fixed, random)
straight_through(f)         y = f(x) (sign, round)   dx = dy                      dx = dy f'(x)
SignSTE, RoundSTE           sign(x), round(x)        dx = dy                      dx = 0
GradientReversal(scale)     y = x                    dx = -scale dy               dx = dy
==========================  =======================  ===========================  ==============

**Feedback alignment** (Lillicrap et al. 2016): the error is sent backward
through a fixed random matrix ``B`` (shape of ``W``) instead of ``W^T``; the
forward weights come to align with ``B`` during training. ``B`` is drawn from
the explicit ``key`` given to :func:`feedback_alignment` (with ``b_init``,
glorot-uniform by default, at ``W``'s shape and dtype) each time the backward
runs: a pure function of the key, never stored in params (the optimizer must
not train it) and never hidden state. The layer's own ``dW`` and ``db`` are the
true ones for the ``dy`` it receives; only the ``dx`` it sends on differs.

**Straight-through estimator** (Bengio et al. 2013): a quantiser's derivative
is 0 almost everywhere; the STE passes ``dy`` through unchanged.

**Gradient reversal** (Ganin & Lempitsky 2015): identity forward, ``-scale dy``
backward (domain-adversarial training).

**Direct feedback alignment** (Nokland 2016) is left out: it sends the output
error straight to every hidden layer, which does not fit a chain of layer-local
VJPs (a layer's ``bwd`` only ever sees its own ``dy``).

:func:`alignment_angles` measures, per layer, the angle between the rule's
update and the true gradient (both computed by hand on one batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .core import Layer, Loss, meta, named, no_params
from .grad import require_key
from .initializers import glorot_uniform
from .walk import backward, leaf_nodes, record, seed
from .structure import recorded

__all__ = ["feedback_alignment", "straight_through", "SignSTE", "RoundSTE", "GradientReversal",
           "alignment_angles", "rule_grads"]


@recorded
def feedback_alignment(layer: Layer, key, *, b_init=glorot_uniform) -> Layer:
    """``layer`` (a :func:`fnnet.Dense`) with the feedback-alignment backward
    ``dx = dy B^T``, ``B = b_init(key, W.shape, W.dtype)`` fixed by ``key``.

    Params, forward and ``dW``, ``db`` are the Dense layer's own; per-example
    gradients (:mod:`fnnet.per_example`) work as for Dense.
    """
    if not isinstance(layer, Layer) or not layer.name.startswith("Dense("):
        raise TypeError(f"feedback_alignment: expects a Dense layer (e.g. fn.Dense(64)), got "
                        f"{layer!r}")
    try:
        jax.random.key_data(key)
    except (TypeError, ValueError):
        raise TypeError(f"feedback_alignment: key must be a jax.random key (the fixed random "
                        f"feedback matrix is drawn from it), got {key!r}") from None
    name, feedback_key = f"feedback_alignment({layer.name})", key

    def fwd(params, x, *, key=None):
        return layer.fwd(params, x, key=key)

    def bwd(res, dy):
        x, w = res
        # Dense's bwd with B in W's place: the same dW, db; dx = dy B^T
        return layer.bwd((x, b_init(feedback_key, w.shape, w.dtype)), dy)

    dense = meta(layer)  # dW, db are Dense's own, and so are its per-example rules
    return named(name, layer.init, fwd, bwd, per_example=dense.per_example, sqnorm=dense.sqnorm,
                 rule="feedback alignment", true_bwd=layer.bwd)


@recorded
def straight_through(f, name: str, *, true_derivative=None) -> Layer:
    """A parameter-free layer ``y = f(x)`` (elementwise) whose backward is the identity.

    ``true_derivative(x) -> f'(x)`` is the true VJP's factor (default 0, as for
    sign and rounding); it is only used to measure the rule against the truth.
    """

    def fwd(params, x, *, key=None):
        _checks.floating(name, x)
        return f(x).astype(x.dtype), x

    def bwd(x, dy):
        return (), dy

    def true_bwd(x, dy):
        d = jnp.zeros_like(x) if true_derivative is None else true_derivative(x)
        return (), (dy * d).astype(dy.dtype)

    return named(name, no_params, fwd, bwd, rule="straight-through estimator", true_bwd=true_bwd)


SignSTE = straight_through(jnp.sign, "SignSTE")
RoundSTE = straight_through(jnp.round, "RoundSTE")


@recorded
def GradientReversal(scale: float = 1.0) -> Layer:
    """Identity forward; backward ``dx = -scale * dy`` (params ``()``)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale):
        raise ValueError(f"GradientReversal: scale must be a finite number, got {scale!r}")
    scale = float(scale)
    name = f"GradientReversal({scale:g})"

    def fwd(params, x, *, key=None):
        _checks.floating(name, x)
        return x, None

    def bwd(res, dy):
        return (), (-scale * dy).astype(dy.dtype)

    return named(name, no_params, fwd, bwd, rule="gradient reversal",
                 true_bwd=lambda res, dy: ((), dy))


# --- measuring a rule against the gradient -----------------------------------------------

def rule_grads(model: Layer, loss: Loss, params, x, y, *, key=None):
    """``(value, rule_grads, true_grads)``: the manual gradient as the rules make it and the
    true gradient (every rule layer's ``true_bwd`` instead), from ONE forward; one
    params gradient per leaf layer of the model (:mod:`fnnet.walk`, every combinator
    opened), in forward order. No autodiff.
    """
    require_key(model, key, "rule_grads")
    out, root = record(model, params, x, key=key)
    value, dout = seed(loss, out, y)

    def grads(true):
        got = {}

        def hook(node, dy, inside):
            m = meta(node.layer)
            dp, dx = m.true_bwd(node.res, dy) if true and node.leaf and m.true_bwd else inside(dy)
            got[id(node)] = dp
            return dp, dx

        backward(root, dout, hook)
        return [got[id(n)] for n in leaf_nodes(root)]

    return value, grads(False), grads(True)


def alignment_angles(model: Layer, loss: Loss, params, x, y, *, key=None):
    """``(L,)`` float array: for each leaf layer (forward order), the angle in degrees between
    the rule's update (the manual gradient of its params) and the true gradient.

    0 means the rule follows the gradient exactly, 90 orthogonal (no descent), above
    90 uphill; NaN for layers without params or with a zero gradient. Jit-able.
    """
    _, rule, true = rule_grads(model, loss, params, x, y, key=key)
    out = []
    for g, t in zip(rule, true):
        gl, tl = jax.tree.leaves(g), jax.tree.leaves(t)
        if not gl:
            out.append(jnp.full((), jnp.nan, jnp.float32))
            continue
        dot = sum(jnp.vdot(a, b) for a, b in zip(gl, tl))
        na = jnp.sqrt(sum(jnp.vdot(a, a) for a in gl))
        nb = jnp.sqrt(sum(jnp.vdot(b, b) for b in tl))
        cos = jnp.clip(dot / (na * nb), -1.0, 1.0)
        out.append(jnp.degrees(jnp.arccos(cos)).astype(jnp.float32))
    return jnp.stack(out)
