"""Seeing inside: per-layer gradient statistics for one batch.

``gradient_diagnostics(model, loss, params, x, y)`` runs the model's forward and
its hand-written backward **layer by layer** (every leaf layer, seen through every
combinator by :mod:`fnnet.walk`: ``serial``, ``parallel``, ``residual``, ``tie``,
``mixed_precision``) and records, for every layer ``i`` with input ``x_i``,
output ``y_i = f_i(p_i, x_i)`` and output cotangent ``dy_i`` (the gradient of the
loss w.r.t. ``y_i``)::

    grad_norms[leaf]    ||dL/dp_i[leaf]||_2            per params leaf ("w", "b", ...): the
                        gradient the model's params receive there (a tied parameter's
                        total; unscaled, in the master dtype, inside mixed_precision,
                        where dy and dx are the scaled compute-dtype cotangents)
    dx_norm             ||dL/dx_i||_2                   the cotangent the layer passes back
    dy_norm             ||dL/dy_i||_2
    update_norms[leaf]  ||update[leaf]||, and update_ratio = ||update|| / ||p_i||
                        (needs learning_rate= for an SGD step, or updates=)
    saturated           Sigmoid: fraction of outputs < 0.01 or > 0.99;
                        Tanh: fraction of |outputs| > 0.99 (None for other layers)
    dead                Relu: fraction of units (output positions) that are 0 for
                        EVERY example of the batch (None for other layers)
    vjp_error           manual bwd vs jax.vjp of the same fwd, at this layer's actual
                        input and cotangent: the worst leaf (dparams leaves and dx) of
                        max|manual - vjp| / max(max|manual|, max|vjp|)
    alignment_angle     only for models holding learning-rule layers (fnnet.rules, e.g.
                        feedback alignment): the angle in degrees between the layer's
                        update and the true gradient of its params
                        (fnnet.rules.alignment_angles); a rule layer's own dx is
                        not the true VJP on purpose, so its vjp_error covers dparams only

The signals:

* **Vanishing gradients**: gradient norms shrink geometrically from the last
  layer to the first (each sigmoid multiplies the cotangent by
  ``sigmoid'(z) <= 1/4``, far less when saturated). ``diag.vanishing`` is True when the first parametrized layer's gradient
  norm is below ``vanishing_ratio`` (default ``1e-3``) times the last one's; the
  first layers then learn a thousand times slower than the last, in practice
  not at all. ``diag.exploding`` is the mirror image (ratio above
  ``1 / vanishing_ratio``).
* **Update ratio**: ``lr * ||g|| / ||w||`` around ``1e-3`` is the usual healthy
  range for SGD; ``1e-6`` means the layer is frozen, ``1e-1`` that it is being
  thrown around.
* **Dead ReLUs**: a unit that is never active gets no gradient at all.
* **A wrong backward is located, not just detected**: each layer's manual ``bwd``
  is compared with ``jax.vjp`` of its own ``fwd`` at the same input and the same
  (manual) cotangent, so an error in layer ``k`` shows up at layer ``k`` only --
  the layers before it still see a consistent, if wrong, cotangent.
  ``diag.wrong_layers`` lists the indices whose error exceeds the tolerance
  (by the layer's output dtype: ``1e-5`` in float32, ``1e-2`` in bfloat16, see
  :func:`fnnet.gradcheck.autodiff_rtol`).

``jax.vjp`` runs here only as the referee; the statistics themselves come from the
manual path. The result is plain data: ``print(diag)`` shows a table,
``diag.column("grad_norm")`` gives a NumPy array per column, ``diag.as_dict()``
plain Python lists, and :func:`fnnet.plotting.plot_gradient_norms` /
:func:`fnnet.plotting.plot_vjp_errors` draw it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .combinators import flat_layers  # noqa: F401  (re-exported: the chain view)
from .compare import autodiff_rtol
from .core import Layer, Loss, meta
from .grad import require_key
from .rules import alignment_angles
from .walk import backward, leaf_nodes, leaves, record, seed

__all__ = ["gradient_diagnostics", "GradientDiagnostics", "LayerDiagnostics", "flat_layers"]

SIGMOID_LOW, SIGMOID_HIGH = 0.01, 0.99
TANH_LIMIT = 0.99


def _global_norm(values) -> float | None:
    values = list(values)
    return math.sqrt(sum(v * v for v in values)) if values else None


def _is_float(a) -> bool:
    """A floating-point array, or a tuple of them (graph combinators pass tuples)."""
    leaves = jax.tree.leaves(a)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves)


def _norm(tree) -> float:
    """The 2-norm of all entries of an array or a tuple of arrays."""
    return math.sqrt(sum(float(np.sum(np.square(np.asarray(a, np.float64))))
                         for a in jax.tree.leaves(tree)))


def _shape_of(a):
    """An array's shape, or a tuple of shapes for a tuple of arrays."""
    return tuple(_shape_of(e) for e in a) if isinstance(a, (tuple, list)) else tuple(a.shape)


def _leaf_names(tree) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(p).replace("['", "").replace("']", "") or "(root)"
            for p, _ in paths]


@dataclasses.dataclass(frozen=True)
class LayerDiagnostics:
    """The statistics of one layer (one row of :class:`GradientDiagnostics`).

    Dict fields map params leaf names (``"w"``, ``"b"``) to floats and are empty
    for parameter-free layers; fields that do not apply are ``None``.
    """

    index: int
    path: tuple
    name: str
    input_shape: tuple
    output_shape: tuple
    grad_norms: dict
    weight_norms: dict
    update_norms: dict
    dx_norm: float | None
    dy_norm: float
    saturated: float | None
    dead: float | None
    vjp_error: float | None
    vjp_rtol: float
    # learning rules (fnnet.rules): the rule of this layer ("" for backprop) and, when the
    # model holds any rule layer, the angle (degrees) between this layer's update and
    # the true gradient of its params (None without params)
    rule: str = ""
    alignment_angle: float | None = None

    @property
    def has_params(self) -> bool:
        return bool(self.grad_norms)

    @property
    def grad_norm(self) -> float | None:
        """Global norm of the layer's params gradient (None without params)."""
        return _global_norm(self.grad_norms.values())

    @property
    def weight_norm(self) -> float | None:
        return _global_norm(self.weight_norms.values())

    @property
    def update_ratios(self) -> dict:
        """``||update[leaf]|| / ||params[leaf]||`` per leaf (inf for an all-zero leaf)."""
        return {n: (u / self.weight_norms[n] if self.weight_norms[n] else math.inf)
                for n, u in self.update_norms.items()}

    @property
    def update_ratio(self) -> float | None:
        """``||update|| / ||params||`` over all the layer's leaves (None if unknown)."""
        if not self.update_norms:
            return None
        w, u = self.weight_norm, _global_norm(self.update_norms.values())
        return u / w if w else math.inf

    @property
    def vjp_ok(self) -> bool:
        return self.vjp_error is None or self.vjp_error <= self.vjp_rtol


def _fmt(v, spec=".2e") -> str:
    return "-" if v is None else format(v, spec)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


@dataclasses.dataclass(frozen=True)
class GradientDiagnostics:
    """Per-layer gradient statistics of one batch; ``print`` it for a table.

    ``layers`` is a tuple of :class:`LayerDiagnostics`, in forward order.
    """

    title: str
    loss: float
    layers: tuple
    vanishing_ratio: float = 1e-3

    # -- verdicts ---------------------------------------------------------------
    @property
    def param_layers(self) -> tuple:
        return tuple(row for row in self.layers if row.has_params)

    @property
    def depth_ratio(self) -> float | None:
        """First parametrized layer's gradient norm over the last one's."""
        rows = self.param_layers
        if len(rows) < 2:
            return None
        first, last = rows[0].grad_norm, rows[-1].grad_norm
        if last == 0:
            return math.inf if first > 0 else 1.0
        return first / last

    @property
    def vanishing(self) -> bool:
        """True when the first layer's gradient norm is < ``vanishing_ratio`` x the last's."""
        r = self.depth_ratio
        return r is not None and r < self.vanishing_ratio

    @property
    def exploding(self) -> bool:
        """True when the first layer's gradient norm is > ``1 / vanishing_ratio`` x the last's."""
        r = self.depth_ratio
        return r is not None and r > 1 / self.vanishing_ratio

    @property
    def wrong_layers(self) -> tuple:
        """Indices of the layers whose manual backward disagrees with ``jax.vjp``."""
        return tuple(row.index for row in self.layers if not row.vjp_ok)

    @property
    def vjp_ok(self) -> bool:
        return not self.wrong_layers

    @property
    def dead_layers(self) -> tuple:
        """Indices of Relu layers with at least one dead unit (``print`` warns from 50 %)."""
        return tuple(row.index for row in self.layers if row.dead)

    # -- plain data -----------------------------------------------------------------
    COLUMNS = ("grad_norm", "weight_norm", "update_ratio", "dx_norm", "dy_norm",
               "saturated", "dead", "vjp_error", "alignment_angle")

    def column(self, name: str) -> np.ndarray:
        """One statistic for every layer as a float array (NaN where it does not apply)."""
        if name not in self.COLUMNS:
            raise ValueError(f"GradientDiagnostics.column: unknown column {name!r}; "
                             f"expected one of {self.COLUMNS}")
        vals = [getattr(row, name) for row in self.layers]
        return np.array([np.nan if v is None else v for v in vals], np.float64)

    def as_dict(self) -> dict:
        """``{"loss": float, "vanishing": bool, ..., "layers": [dict per layer]}``."""
        rows = []
        for row in self.layers:
            d = dataclasses.asdict(row)
            d.update(grad_norm=row.grad_norm, weight_norm=row.weight_norm,
                     update_ratio=row.update_ratio, update_ratios=row.update_ratios,
                     vjp_ok=row.vjp_ok)
            rows.append(d)
        return {"title": self.title, "loss": self.loss, "depth_ratio": self.depth_ratio,
                "vanishing": self.vanishing, "exploding": self.exploding,
                "wrong_layers": list(self.wrong_layers), "layers": rows}

    def verdicts(self) -> list[str]:
        """Plain-language findings, one line each (empty when all looks healthy)."""
        out = []
        rows = self.param_layers
        if self.vanishing or self.exploding:
            kind = "VANISHING" if self.vanishing else "EXPLODING"
            out.append(f"{kind} gradient: layer {rows[0].index} ({rows[0].name}) gets "
                       f"{self.depth_ratio:.1e} x the gradient norm of layer "
                       f"{rows[-1].index} ({rows[-1].name})")
        for row in self.layers:
            if row.saturated is not None and row.saturated > 0.5:
                out.append(f"layer {row.index} ({row.name}): {100 * row.saturated:.0f}% of "
                           f"outputs saturated")
            if row.dead is not None and row.dead >= 0.5:
                out.append(f"layer {row.index} ({row.name}): {100 * row.dead:.0f}% of units "
                           f"dead (never active on this batch)")
            if not row.vjp_ok:
                out.append(f"layer {row.index} ({row.name}): WRONG BACKWARD, manual vs "
                           f"jax.vjp relative error {row.vjp_error:.1e} > {row.vjp_rtol:.0e}")
        return out

    def __str__(self) -> str:
        cols = ("#", "layer", "out shape", "|grad|", "|w|", "upd/w", "|dx|",
                "satur.", "dead", "vjp err")
        angles = any(row.alignment_angle is not None for row in self.layers)
        cols += ("angle to grad",) if angles else ()
        table = []
        for row in self.layers:
            err = _fmt(row.vjp_error, ".1e") + ("" if row.vjp_ok else " WRONG")
            err += f" (dparams; dx: {row.rule})" if row.rule else ""
            table.append((str(row.index), row.name, str(row.output_shape),
                          _fmt(row.grad_norm), _fmt(row.weight_norm), _fmt(row.update_ratio),
                          _fmt(row.dx_norm), _pct(row.saturated), _pct(row.dead), err)
                         + ((_fmt(row.alignment_angle, ".1f"),) if angles else ()))
        widths = [max(len(r[i]) for r in (cols, *table)) for i in range(len(cols))]
        fmt = lambda r: "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        ratio = self.depth_ratio
        lines = [f"gradient diagnostics: {self.title}",
                 f"  loss {self.loss:.4g}; |grad| first/last layer "
                 f"{_fmt(ratio, '.1e')} (vanishing below {self.vanishing_ratio:.0e})",
                 fmt(cols), *map(fmt, table)]
        found = self.verdicts()
        lines += [f"  ! {v}" for v in found] if found else ["  no problems found"]
        return "\n".join(lines)

    __repr__ = __str__


def _leaf_norms(tree) -> dict:
    """``{leaf name: ||leaf||_2}`` over the float leaves, in float64 on the host."""
    return {n: float(np.linalg.norm(np.asarray(a, np.float64).ravel()))
            for n, a in zip(_leaf_names(tree), jax.tree.leaves(tree)) if _is_float(a)}


def _rel_err(manual, ref) -> float:
    """The worst float leaf's ``max|m - r| / max(max|m|, max|r|)`` (0 when both are 0)."""
    worst = 0.0
    for m, r in zip(jax.tree.leaves(manual), jax.tree.leaves(ref)):
        if not (_is_float(m) and _is_float(r)) or np.size(m) == 0:
            continue
        m, r = np.asarray(m, np.float64), np.asarray(r, np.float64)
        if m.shape != r.shape:
            return math.inf
        diff = float(np.max(np.abs(m - r)))
        scale = max(float(np.max(np.abs(m))), float(np.max(np.abs(r))))
        rel = (math.inf if not math.isfinite(diff) else diff / scale if scale > 0
               else 0.0 if diff == 0 else math.inf)
        worst = max(worst, rel)
    return worst


ACTIVATIONS = ("Sigmoid", "Tanh", "Relu")


def _activation_stats(name: str, y) -> dict:
    """Saturated fraction (Sigmoid, Tanh) or dead-unit fraction (Relu) of outputs ``y``."""
    y = np.asarray(y, np.float64)
    if y.size == 0:
        return {}
    if name == "Sigmoid":
        return {"saturated": float(np.mean((y < SIGMOID_LOW) | (y > SIGMOID_HIGH)))}
    if name == "Tanh":
        return {"saturated": float(np.mean(np.abs(y) > TANH_LIMIT))}
    if name == "Relu":
        active = np.any(y.reshape(y.shape[0], -1) > 0, axis=0)
        return {"dead": float(np.mean(~active))}
    return {}


def _walk(model: Layer, loss: Loss, check_vjp: bool):
    """The traceable core: ``walk(params, x, y, key) -> (loss, [row dicts of arrays])``,
    one row per leaf layer of the tape (:mod:`fnnet.walk`), in forward order."""

    def stats(params, x, y, key):
        out, root = record(model, params, x, key=key)
        value, dout = seed(loss, out, y)
        rows = {}

        # Backward, by hand, node by node; jax.vjp only referees each leaf.
        def hook(node, dy, inside):
            dp, dx = inside(dy)
            if node.leaf:
                layer, xi = node.layer, node.x
                # raw arrays; the statistics are computed on the host (no per-shape compiles)
                row = {"dp": dp, "dy": dy, "dx": dx if _is_float(xi) else None,
                       "y": node.y if layer.name in ACTIVATIONS else None, "ref": None}
                if check_vjp:
                    row["ref"] = _vjp_reference(layer, node.params, xi, node.key, dy)
                rows[id(node)] = row
            return dp, dx

        grads, _ = backward(root, dout, hook)
        return value, [rows[id(n)] for n in leaf_nodes(root)], grads

    return stats


def _vjp_reference(layer, p, x, key, dy):
    """``jax.vjp`` of ``layer``'s forward at ``(p, x)`` pulled back along ``dy``: ``(dp, dx)``.

    Only the float parts are differentiated: integer inputs (ids, a bool mask in a tuple
    input) get ``None``, and integer outputs (whose cotangent is ``None``) are left out."""
    leaves, treedef = jax.tree.flatten(x)
    is_f = [_is_float(a) for a in leaves]

    def f(p_, xf):
        it = iter(xf)
        out = layer.fwd(p_, treedef.unflatten([next(it) if m else a for a, m in zip(leaves, is_f)]),
                        key=key)[0]
        return [o for o in jax.tree.leaves(out) if _is_float(o)]

    _, pullback = jax.vjp(f, p, [a for a, m in zip(leaves, is_f) if m])
    cot = [d for d in jax.tree.leaves(dy, is_leaf=lambda a: a is None) if d is not None]
    dp, dxf = pullback(cot)
    it = iter(dxf)
    dx = treedef.unflatten([next(it) if m else None for m in is_f])
    return dp, (dx if any(is_f) else None)


@functools.lru_cache(maxsize=32)
def _compiled(model: Layer, loss: Loss, check_vjp: bool):
    return jax.jit(_walk(model, loss, check_vjp))


def _tape(model: Layer, params, x, key) -> list:
    """Each leaf layer's ``(path, layer, input shape, output shape, output dtype)``
    (by ``jax.eval_shape``: nothing is computed)."""
    found = []

    def trace(params, x):
        _, root = record(model, params, x, key=key)
        found.extend((n.path, n.layer, _shape_of(n.x), _shape_of(n.y),
                      jnp.result_type(*jax.tree.leaves(n.y) or [jnp.float32]))
                     for n in leaf_nodes(root))

    jax.eval_shape(trace, params, x)
    return found


def gradient_diagnostics(model: Layer, loss: Loss, params, x, y, *, key=None,
                         learning_rate: float | None = None, updates=None,
                         check_vjp: bool = True, vanishing_ratio: float = 1e-3,
                         rtol: float | None = None, jit: bool = False) -> GradientDiagnostics:
    """Per-layer gradient statistics of ``loss(model(params, x), y)`` on one batch.

    Args:
      model: a Layer; every combinator is expanded down to its leaf layers.
      loss, params, x, y: as for :func:`fnnet.value_and_grad`.
      key: PRNG key for random layers (split per layer as the combinators split it).
      learning_rate: if given, the update ratio is that of one SGD step,
        ``learning_rate * ||g|| / ||w||``.
      updates: alternatively, the updates an optimizer would add to ``params``
        (same tree as ``params``, e.g. from ``opt.update``); ratio ``||u|| / ||w||``.
      check_vjp: compare each layer's manual ``bwd`` with ``jax.vjp`` of its ``fwd``.
      vanishing_ratio: threshold of :attr:`GradientDiagnostics.vanishing`.
      rtol: manual-vs-vjp tolerance (default by each layer's output dtype: 1e-5 in float32).
      jit: compile the whole walk with ``jax.jit`` (cached per model and loss): worth
        it when the same model is diagnosed repeatedly, e.g. every few epochs. The
        default runs eagerly, which re-uses JAX's per-operation caches across models
        and is faster for a one-off look.

    Returns:
      A :class:`GradientDiagnostics` (frozen; ``print`` it for a table).
    """
    if learning_rate is not None and updates is not None:
        raise ValueError("gradient_diagnostics: pass learning_rate= or updates=, not both")
    require_key(model, key, "gradient_diagnostics")
    if updates is not None and jax.tree.structure(updates) != jax.tree.structure(params):
        raise ValueError("gradient_diagnostics: updates must have the tree structure of "
                         f"params, got {jax.tree.structure(updates)}")
    if not jit:
        run = _walk(model, loss, bool(check_vjp))
    else:
        try:
            run = _compiled(model, loss, bool(check_vjp))
        except TypeError:  # an unhashable model or loss: compile without the cache
            run = jax.jit(_walk(model, loss, bool(check_vjp)))
    with jax.default_matmul_precision("highest"):
        value, stats, grads = run(params, x, y, key)
    value, stats, grads = jax.device_get((value, stats, grads))
    entries = _tape(model, params, x, key)
    # the gradient each leaf's params receive: the model's, routed to the leaf (a tied
    # table's total; unscaled by mixed precision); its own dparams serve the vjp check
    grad_parts = [g for _, _, g, _ in leaves(model, grads)]
    param_parts = [p for _, _, p, _ in leaves(model, params)]
    update_parts = ([u for _, _, u, _ in leaves(model, updates)] if updates is not None
                    else [None] * len(entries))
    rules = [meta(layer).rule for _, layer, *_ in entries]
    angles = [None] * len(entries)
    if any(rules):
        angles = [None if not np.isfinite(a) else float(a) for a in
                  np.asarray(alignment_angles(model, loss, params, x, y, key=key))]
    rows = []
    for i, ((path, layer, in_shape, out_shape, out_dtype), st) in enumerate(
            zip(entries, stats)):
        grad_norms = _leaf_norms(grad_parts[i])
        if update_parts[i] is not None:
            update_norms = _leaf_norms(update_parts[i])
        elif learning_rate is not None:
            update_norms = {n: abs(learning_rate) * g for n, g in grad_norms.items()}
        else:
            update_norms = {}
        err = None
        if st["ref"] is not None:
            ref_dp, ref_dx = st["ref"]
            err = _rel_err(st["dp"], ref_dp)
            if ref_dx is not None and not rules[i]:  # a rule's dx differs on purpose
                err = max(err, _rel_err(st["dx"], ref_dx))
        act = _activation_stats(layer.name, st["y"]) if st["y"] is not None else {}
        dx = st["dx"]
        rows.append(LayerDiagnostics(
            index=i, path=path, name=layer.name, input_shape=in_shape,
            output_shape=out_shape, grad_norms=grad_norms, weight_norms=_leaf_norms(param_parts[i]),
            update_norms=update_norms,
            dx_norm=None if dx is None else _norm(dx), dy_norm=_norm(st["dy"]),
            saturated=act.get("saturated"), dead=act.get("dead"), vjp_error=err,
            vjp_rtol=autodiff_rtol(out_dtype) if rtol is None else rtol,
            rule=rules[i], alignment_angle=angles[i]))
    name = model.name if len(model.name) <= 80 else model.name[:72] + f"... ({len(entries)} layers)"
    return GradientDiagnostics(title=f"{name} with {getattr(loss, 'name', 'loss')}",
                               loss=float(value), layers=tuple(rows),
                               vanishing_ratio=vanishing_ratio)
