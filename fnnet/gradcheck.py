"""Gradient checking: manual VJPs vs ``jax.grad`` vs central finite differences.

``check_grads(model, loss, params, x, y)`` checks the gradient of the scalar loss
w.r.t. every params leaf; ``check_layer(layer, params, x)`` checks one layer's
``bwd`` (w.r.t. params AND input) against a random output cotangent ``dy``.
Both return a :class:`GradCheckReport`: ``report.ok``, and ``print(report)``
for a per-leaf table.

Two comparisons per floating-point leaf:

1. **manual vs autodiff**, in the dtype of the inputs (float32 usually), with
   matmuls at ``"highest"`` precision. Error = ``max|m - a| / max(max|a|, max|m|)``
   (normwise relative error of the leaf). Default tolerance: 1e-5 in float32
   (~80 ulps: the two paths evaluate the same products in a different order),
   1e-10 in float64, 1e-2 in 16-bit types. A leaf whose true gradient cancels
   to exactly zero (the bias of a layer feeding BatchNorm) is zero only up to the
   rounding of the terms that cancel; it also passes when ``max|m - a|`` is below
   ``1e-2 * rtol`` times the largest gradient entry of the whole check.
2. **manual vs central finite differences in float64**, along
   ``num_directions`` random unit directions ``v`` per leaf::

       fd = (S(p + h v) - S(p - h v)) / (2 h),      compared with  <manual_grad, v>

   Error = ``|fd - <g, v>| / max(|g|, |fd|)``; passes when
   ``|fd - <g, v>| <= atol + rtol * max(|g|, |fd|)`` with ``rtol = 1e-6`` and
   ``atol = 1e-9 * max(1, |S|)``. Central differences in float64 with
   ``h = 1e-6`` carry a truncation error of order ``h^2 = 1e-12`` and a rounding
   error of order ``1e-16 |S| / h = 1e-10 |S|``, both far below the tolerance,
   while a wrong backward (a dropped term, a missing transpose, a 1/n off) is
   off by order 1.

**Kinks.** A finite difference across a ReLU kink (or a max-pool tie) measures
neither one-sided derivative. The checker compares the non-float residuals
(ReLU masks, argmax indices) at ``p``, ``p + h v`` and ``p - h v``; if they
differ, the direction crosses a kink and another direction (then a smaller
``h``) is tried. A leaf whose every try crosses a kink (e.g. a bias feeding a
pre-activation that is exactly 0) is reported as ``kink`` and excluded from the
finite-difference verdict; its manual-vs-autodiff comparison still counts.

**float64.** If ``jax_enable_x64`` is off, the finite-difference part runs inside
``jax.enable_x64(True)`` for the duration of the check (the report says so).
Enable it for the whole program with ``jax.config.update("jax_enable_x64", True)``
at start-up, or ``JAX_ENABLE_X64=1`` in the environment. The finite
differences never run in float32: a float32 verdict would be meaningless.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .compare import (ABS_FLOOR, GradCheckReport, LeafCheck, autodiff_rtol, cast_floats, compare,
                      discrete, input_label, random_like)
from ._checks import is_float
from .core import Layer, Loss, call, custom_vjp, meta
from .grad import loss_fn, value_and_grad
from .second_order import check_hvp, check_layer_double_backward
from .walk import leaves, record

__all__ = ["check_grads", "check_layer", "check_loss", "GradCheckReport", "LeafCheck",
           "autodiff_rtol"]

def check_grads(model: Layer, loss: Loss, params, x, y, *, key=None, seed: int = 0,
                rtol: float | None = None, fd_rtol: float = 1e-6, fd_eps: float = 1e-6,
                num_directions: int = 3, finite_differences: bool = True,
                double_backward: bool = False) -> GradCheckReport:
    """Check ``value_and_grad(model, loss)`` (manual) against autodiff and finite differences.

    Args:
      model, loss, params, x, y: as for ``value_and_grad``.
      key: PRNG key for random layers (the same key is used at every evaluation,
        so dropout masks are fixed).
      seed: seed of the random finite-difference directions.
      rtol: manual-vs-autodiff tolerance (default by dtype, see module doc).
      fd_rtol, fd_eps, num_directions: finite-difference settings.
      finite_differences: set False to skip the float64 part.
      double_backward: also check the hand-written backward's own derivative: the
        Hessian-vector product of :func:`fnnet.hvp` (forward mode through the manual
        gradient) vs autodiff-of-autodiff vs finite differences (rows ``d2 ...``;
        PyTorch's ``gradgradcheck``).

    Learning rules (layers of :mod:`fnnet.rules`, e.g. feedback alignment, whose
    ``bwd`` is not the true VJP on purpose, anywhere in the model): every leaf is
    compared with autodiff through the rules' own VJPs (``fn.custom_vjp``), and
    the mismatch with the true gradient (finite differences) of the leaves the
    rules change is reported as intended, naming the rule, not as a failure.

    Returns:
      A :class:`GradCheckReport` with one row per params leaf.
    """
    forward = loss_fn(model, loss)
    manual = value_and_grad(model, loss, method="manual")

    def cast_data(p):
        dt = jnp.result_type(*jax.tree.leaves(p)) if jax.tree.leaves(p) else jnp.float32
        return cast_floats(x, dt), cast_floats(y, dt)     # x may be a tuple input

    def scalar(p):
        xx, yy = cast_data(p)
        return forward(p, xx, yy, key=key)

    def grads(p):
        xx, yy = cast_data(p)
        return manual(p, xx, yy, key=key)[1]

    def signature(p):
        xx, _ = cast_data(p)
        return discrete(model.fwd(p, xx, key=key)[1])

    title = f"{model.name} with {getattr(loss, 'name', 'loss')}"
    options = dict(rtol=rtol, fd_rtol=fd_rtol, fd_eps=fd_eps, num_directions=num_directions,
                   finite_differences=finite_differences)
    rules, reference = _rule_leaves(model, loss, params, scalar, cast_data, key)
    report = compare(title, params, scalar, grads, signature, key=jax.random.key(seed),
                    reference=reference, rules=rules, **options)
    if double_backward:
        report = _merge(report, check_hvp(model, loss, params, x, y, key=key, seed=seed,
                                          **options))
    if not report.ok:
        report = dataclasses.replace(report, located=_locate(model, loss, params, x, y, key))
    return report


def _locate(model, loss, params, x, y, key) -> tuple:
    """Lines naming the layers whose own backward disagrees with ``jax.vjp`` of their
    forward, at the input and cotangent each really sees (``fn.gradient_diagnostics``).

    A wrong ``dx`` in layer k makes the params rows of the layers BELOW k fail, so
    the failing rows alone point at the wrong place; this points at k."""
    from .diagnostics import gradient_diagnostics

    try:
        diag = gradient_diagnostics(model, loss, params, x, y, key=key)
    except Exception as err:  # noqa: BLE001 -- locating is a courtesy; the table stands
        return (f"could not locate the failing layer per layer ({type(err).__name__}: {err})",)
    wrong = [row for row in diag.layers if not row.vjp_ok]
    if not wrong:
        return ("every layer's backward equals jax.vjp of its own forward on this batch: "
                "look at the loss's backward, or at a combinator's routing",)
    lines = [f"wrong backward in layer {row.index} ({row.name}, path {row.path}): bwd vs "
             f"jax.vjp of its forward {row.vjp_error:.1e} > {row.vjp_rtol:.0e}" for row in wrong]
    return (*lines, "fix that layer first: the rows of the layers before it fail because of it")


def _rule_leaves(model, loss, params, scalar, cast_data, key):
    """``({leaf index: rule name}, reference)`` for a model containing learning-rule
    layers (``meta(layer).rule``) among its leaf layers (:mod:`fnnet.walk`);
    ``({}, None)`` otherwise.

    ``reference`` is ``jax.grad`` of the forward with every rule layer wrapped by
    ``fn.custom_vjp`` (autodiff that uses the rule's backward); a params leaf is
    intended to differ from the true gradient where this reference does (a leaf
    upstream of a rule, not one in a parallel branch beside it)."""
    names = list(dict.fromkeys(meta(layer).rule for _, layer, _, _ in leaves(model, params)
                               if meta(layer).rule))
    if not names:
        return {}, None

    def leaf_fwd(layer, p, x, k, s):
        if meta(layer).rule:
            return custom_vjp(layer)(p, x, k), None
        return call(layer, p, x, k, s)

    def with_rules(p):
        xx, yy = cast_data(p)
        return loss.fwd(record(model, p, xx, key=key, leaf_fwd=leaf_fwd)[0], yy)[0]

    reference = jax.grad(with_rules)
    with jax.default_matmul_precision("highest"):
        pairs = list(zip(jax.tree.leaves(jax.jit(reference)(params)),
                         jax.tree.leaves(jax.jit(jax.grad(scalar))(params))))
    tol = autodiff_rtol(jnp.result_type(*jax.tree.leaves(params) or [jnp.float32]))
    top = max((float(np.max(np.abs(a))) for a, _ in pairs if np.size(a)), default=0.0)
    rule = " / ".join(names)
    return {i: rule for i, (a, b) in enumerate(pairs) if not np.allclose(
        np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=100 * tol,
        atol=ABS_FLOOR * tol * top)}, reference


def _merge(report: GradCheckReport, extra: GradCheckReport) -> GradCheckReport:
    """``report`` with ``extra``'s rows appended as ``d2 <leaf>`` (double backward)."""
    rows = tuple(dataclasses.replace(leaf, path="d2 " + leaf.path) for leaf in extra.leaves)
    note = "; ".join(dict.fromkeys(n for n in (report.note, extra.note) if n))
    return dataclasses.replace(report, title=report.title + " (+ double backward: rows d2)",
                               leaves=report.leaves + rows, note=note)


def check_layer(layer: Layer, params, x, *, key=None, dy=None, seed: int = 0,
                rtol: float | None = None, fd_rtol: float = 1e-6, fd_eps: float = 1e-6,
                num_directions: int = 3, finite_differences: bool = True,
                double_backward: bool = False) -> GradCheckReport:
    """Check one layer's ``bwd`` w.r.t. its params and its input.

    The scalar checked is ``S(params, x) = sum(fwd(params, x) * dy)`` for a fixed
    cotangent ``dy`` (random normal from ``seed`` unless given; a tuple for a
    tuple output), so the manual gradient is exactly ``bwd(residuals, dy)``. Rows
    are named ``[0]...`` for params leaves and ``dx`` for the input (``dx[0]``,
    ``dx[1]``, ... for the floating-point arrays of a tuple input). Integer inputs
    (``Embedding`` ids) have no gradient: their ``dx`` must be ``None`` and they get
    no row.

    ``double_backward=True`` adds rows ``d2 ...``: the derivative of the hand-written
    ``bwd`` itself w.r.t. params, input and ``dy`` (PyTorch's ``gradgradcheck``; see
    :mod:`fnnet.second_order`). A learning-rule layer (``fnnet.rules``: its ``dx`` is
    not the true VJP on purpose) gets its input rows reported as intended.
    """
    k_dy, k_dir = jax.random.split(jax.random.key(seed))
    if dy is None:
        y = jax.eval_shape(lambda p, x: layer.fwd(p, x, key=key)[0], params, x)
        dy = random_like(k_dy, y)
    x_leaves, x_def = jax.tree.flatten(x)
    is_f = [is_float(a) for a in x_leaves]
    single = x_def == jax.tree.structure(0) and is_f[0]  # one float array: row "[1]"

    def full_x(xf):
        if single:
            return xf
        it = iter(xf)
        return jax.tree.unflatten(x_def, [next(it) if f else a for a, f in zip(x_leaves, is_f)])

    def run(theta):
        p, xf = theta
        out, res = layer.fwd(p, full_x(xf), key=key)
        return out, res, jax.tree.map(lambda d, o: d.astype(o.dtype), dy, out)

    def scalar(theta):
        out, _, d = run(theta)
        return sum(jnp.sum(o * g) for o, g in zip(jax.tree.leaves(out), jax.tree.leaves(d)))

    def grads(theta):
        _, res, d = run(theta)
        dparams, dx = layer.bwd(res, d)
        dx_leaves = jax.tree.leaves(dx, is_leaf=lambda a: a is None)
        if len(dx_leaves) != len(x_leaves):
            raise ValueError(f"{layer.name}: bwd returned dx with {len(dx_leaves)} entries for "
                             f"an input with {len(x_leaves)} arrays; dx must have the input's "
                             f"tree (None for integer inputs)")
        for g, f in zip(dx_leaves, is_f):
            if not f and g is not None:
                raise ValueError(f"{layer.name}: bwd returned an input gradient for an integer "
                                 f"input; it must be None (integers have no gradient)")
        if single:
            return dparams, dx
        return dparams, tuple(g for g, f in zip(dx_leaves, is_f) if f)

    def signature(theta):
        return discrete(run(theta)[1])

    theta = (params, x if single else tuple(a for a, f in zip(x_leaves, is_f) if f))
    options = dict(rtol=rtol, fd_rtol=fd_rtol, fd_eps=fd_eps, num_directions=num_directions,
                   finite_differences=finite_differences)
    rule = meta(layer).rule
    n_params = len(jax.tree.leaves(params))
    rules = {i: rule for i in range(n_params, len(jax.tree.leaves(theta)))} if rule else {}
    report = compare(layer.name, theta, scalar, grads, signature, key=k_dir, rules=rules,
                     rule_vs_autodiff=True, label=input_label, **options)
    if double_backward:
        report = _merge(report, check_layer_double_backward(layer, params, x, key=key, dy=dy,
                                                            seed=seed, **options))
    return report


def check_loss(loss: Loss, pred, target, *, seed: int = 0, rtol: float | None = None,
               fd_rtol: float = 1e-6, fd_eps: float = 1e-6, num_directions: int = 3,
               finite_differences: bool = True) -> GradCheckReport:
    """Check a loss's ``bwd`` w.r.t. the prediction: manual vs ``jax.grad`` of ``loss.fwd``
    vs float64 central finite differences (the same engine and tolerances as
    :func:`check_grads`). ``target`` may be any pytree (e.g. ``(labels, mask)``); its
    float leaves follow ``pred``'s dtype. One report row, ``['pred']``::

        print(fn.check_loss(fn.losses.huber, pred, target))
    """

    def split(theta):
        p = theta["pred"]
        return p, cast_floats(target, jnp.result_type(p))

    def scalar(theta):
        return loss.fwd(*split(theta))[0]

    def grads(theta):
        value, res = loss.fwd(*split(theta))
        return {"pred": loss.bwd(res, jnp.ones((), value.dtype))}

    def signature(theta):
        return discrete(loss.fwd(*split(theta))[1])

    return compare(getattr(loss, "name", "loss"), {"pred": pred}, scalar, grads, signature,
                  key=jax.random.key(seed), rtol=rtol, fd_rtol=fd_rtol, fd_eps=fd_eps,
                  num_directions=num_directions, finite_differences=finite_differences)
