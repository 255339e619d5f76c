"""Second order: the hand-written gradient is ordinary JAX code, so it differentiates.

``hvp(model, loss, params, x, y, v)`` is the Hessian-vector product ``H v``
of the loss w.r.t. the params, computed **forward-over-manual-reverse**: the
JVP (``jax.jvp``, forward mode) of the manual gradient function
``p -> value_and_grad(model, loss)(p, x, y)[1]``::

    H v = d/de [ grad(p + e v) ] at e = 0

Forward mode runs through every hand-written backward (each ``bwd`` is plain
``jnp`` code) at about the cost of two more gradients, with no reverse-over-
reverse tape. It equals ``jax.jvp(jax.grad(f), ...)`` of the same forward
(tested in float64). At a ReLU kink the hand-written rule's derivative is the
rule's own (0 for the mask), as it is for ``jax.grad``.

**Double-backward checks** (PyTorch's ``gradgradcheck``): the backward itself
is differentiated and compared with autodiff-of-autodiff and with float64
finite differences of the true first derivative:

* :func:`check_layer_double_backward`: the scalar
  ``S(p, x, dy) = <vjp(p, x)(dy), u>`` for a fixed random ``u``; its gradient
  through the hand-written ``bwd`` (``jax.grad`` of ``<bwd(res(p, x), dy), u>``)
  vs ``jax.grad`` of the ``jax.vjp`` version vs finite differences.
* :func:`check_hvp`: ``S(p) = <grad(p), u>``, whose gradient is ``H u``:
  :func:`hvp` vs ``jax.grad`` of ``jax.grad`` vs finite differences.

``fn.check_layer(..., double_backward=True)`` and ``fn.check_grads(...,
double_backward=True)`` append these rows (named ``d2 ...``) to their report.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._checks import is_float
from .compare import compare, discrete, input_label, random_like
from .core import Layer, Loss, meta
from .grad import loss_fn, value_and_grad

__all__ = ["hvp", "check_hvp", "check_layer_double_backward"]


def _vdot(a, b):
    pairs = [(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    return sum(jnp.vdot(x, y.astype(x.dtype)) for x, y in pairs)


def hvp(model: Layer, loss: Loss, params, x, y, v, *, key=None):
    """``H v``: the Hessian of ``loss(model(params, x), y)`` w.r.t. params times ``v``.

    ``v`` has the params' tree; so does the result. Forward-over-manual-reverse:
    ``jax.jvp`` of the hand-written gradient (see the module docstring).
    """
    if jax.tree.structure(v) != jax.tree.structure(params):
        raise ValueError(f"hvp: v must have the tree structure of params, "
                         f"{jax.tree.structure(params)}; got {jax.tree.structure(v)}")
    grad = value_and_grad(model, loss)
    return jax.jvp(lambda p: grad(p, x, y, key=key)[1], (params,), (v,))[1]


def check_layer_double_backward(layer: Layer, params, x, *, key=None, dy=None, seed: int = 0,
                                **options):
    """Double-backward check of one layer's ``bwd`` (rows ``d2 [0]...`` params, ``d2 dx``
    the input ``x``, ``d2 dy`` the cotangent ``dy``). ``options`` as for ``check_layer``."""
    if not isinstance(x, jax.Array | jnp.ndarray) and not hasattr(x, "shape"):
        raise ValueError(f"{layer.name} (double backward): the check takes a single input "
                         f"array, got {type(x).__name__}")
    k_dy, k_u, k_dir = jax.random.split(jax.random.key(seed + 1), 3)
    x_float = is_float(x)
    if dy is None:
        out = jax.eval_shape(lambda p, x: layer.fwd(p, x, key=key)[0], params, x)
        dy = jax.random.normal(k_dy, out.shape, out.dtype)
    u = random_like(k_u, (params, x) if x_float else params)

    def split(theta):
        return (theta[0], theta[1], theta[2]) if x_float else (theta[0], x, theta[1])

    def reference(theta):  # <jax.vjp(fwd)(dy), u>
        p, xx, d = split(theta)
        if x_float:
            _, pull = jax.vjp(lambda p_, x_: layer.fwd(p_, x_, key=key)[0], p, xx)
            return _vdot(pull(d), u)
        _, pull = jax.vjp(lambda p_: layer.fwd(p_, xx, key=key)[0], p)
        return _vdot(pull(d)[0], u)

    def through_manual(theta):  # <bwd(res, dy), u>
        p, xx, d = split(theta)
        out, res = layer.fwd(p, xx, key=key)
        dp, dx = layer.bwd(res, d.astype(out.dtype))
        return _vdot((dp, dx) if x_float else dp, u)

    def signature(theta):
        p, xx, _ = split(theta)
        return discrete(layer.fwd(p, xx, key=key)[1])

    theta = (params, x, dy) if x_float else (params, dy)
    rule = meta(layer).rule  # its bwd is not the true VJP on purpose
    rules = {i: rule for i in range(len(jax.tree.leaves(theta)))} if rule else {}
    names = ("dx", "dy") if x_float else ("dy",)
    return compare(f"{layer.name} (double backward)", theta, reference, jax.grad(through_manual),
                   signature, key=k_dir, rules=rules, rule_vs_autodiff=True,
                   label=lambda path: input_label(path, names), **options)


def check_hvp(model: Layer, loss: Loss, params, x, y, *, key=None, seed: int = 0, **options):
    """Double-backward check of a whole model: :func:`hvp` along a random ``u`` vs
    ``jax.grad(<jax.grad(f), u>)`` vs finite differences (rows ``d2 ...``)."""
    k_u, k_dir = jax.random.split(jax.random.key(seed + 1))
    forward = loss_fn(model, loss)
    u = random_like(k_u, params)

    def cast(p):
        dt = jnp.result_type(*jax.tree.leaves(p)) if jax.tree.leaves(p) else jnp.float32
        return (x.astype(dt) if is_float(x) else x), (y.astype(dt) if is_float(y) else y)

    def reference(p):  # <autodiff gradient, u>; its gradient is H u
        xx, yy = cast(p)
        return _vdot(jax.grad(lambda q: forward(q, xx, yy, key=key))(p), u)

    def manual(p):
        xx, yy = cast(p)
        return hvp(model, loss, p, xx, yy, jax.tree.map(lambda a, b: a.astype(b.dtype), u, p),
                   key=key)

    def signature(p):
        xx, _ = cast(p)
        return discrete(model.fwd(p, xx, key=key)[1])

    return compare(f"{model.name} with {getattr(loss, 'name', 'loss')} (double backward: hvp)",
                  params, reference, manual, signature, key=k_dir, **options)
