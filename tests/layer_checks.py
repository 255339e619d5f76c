"""The three checks every layer and loss gets (DESIGN.md rule 4).

1. manual ``bwd`` vs ``jax.vjp`` of the same ``fwd``, same dtype, tight tolerance;
2. manual vs central finite differences in float64 (``fn.check_layer``);
3. manual inside ``jax.jit`` vs outside.

Tolerances: float32 manual-vs-vjp ``rtol=1e-5`` relative to the largest entry of
the leaf (the paths compute the same products in a different order, so they
differ by a few ulps times the reduction length), float64 FD ``rtol=1e-6``
(see ``fnnet.gradcheck``), jit-vs-eager ``rtol=1e-5`` (XLA may fuse and
reorder float32 arithmetic under jit).
"""

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn


def _close_normwise(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    err = np.max(np.abs(a - b), initial=0.0)
    assert err <= rtol * scale + 1e-30, f"{what}: max abs err {err:.3e} > {rtol:.0e} * {scale:.3e}"


def assert_trees_close(a, b, rtol, what="tree"):
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree.flatten(b)
    assert jax.tree.structure(a) == tb, f"{what}: tree {jax.tree.structure(a)} != {tb}"
    for (path, x), y in zip(la, lb):
        _close_normwise(x, y, rtol, f"{what}{jax.tree_util.keystr(path)}")


def assert_layer_correct(layer, params, x, *, key=None, rtol=1e-5, fd=True, seed=0):
    """Run the three checks on one layer at (params, x). Returns the check report.

    ``x`` and the output may be tuples (graph combinators); integer inputs
    (ids) must get ``None`` as their cotangent and are not differentiated.
    """
    y, res = layer.fwd(params, x, key=key)
    # output shape as jax.eval_shape predicts
    spec = jax.eval_shape(lambda p, x: layer.fwd(p, x, key=key)[0], params, x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), y) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), spec)
    y_leaves, y_def = jax.tree.flatten(y)
    keys = jax.random.split(jax.random.key(seed + 1), len(y_leaves))
    dy = jax.tree.unflatten(y_def, [jax.random.normal(k, a.shape, a.dtype)
                                    for k, a in zip(keys, y_leaves)])

    # 1. manual vs jax.vjp, same dtype (w.r.t. params and the float parts of x)
    dparams, dx = layer.bwd(res, dy)
    x_leaves, x_def = jax.tree.flatten(x)
    is_f = [jnp.issubdtype(jnp.result_type(a), jnp.floating) for a in x_leaves]

    def f(p, xf):
        it = iter(xf)
        xx = jax.tree.unflatten(x_def, [next(it) if m else a for a, m in zip(x_leaves, is_f)])
        return layer.fwd(p, xx, key=key)[0]

    xf = [a for a, m in zip(x_leaves, is_f) if m]
    _, pullback = jax.vjp(f, params, xf)
    ref_dparams, ref_dxf = pullback(dy)
    assert_trees_close(dparams, ref_dparams, rtol, f"{layer.name} dparams")
    for g, p in zip(jax.tree.leaves(dparams), jax.tree.leaves(params)):
        assert g.dtype == p.dtype, f"{layer.name}: dparams dtype {g.dtype} != params dtype {p.dtype}"
    dx_leaves = jax.tree.leaves(dx, is_leaf=lambda a: a is None)
    assert len(dx_leaves) == len(x_leaves), f"{layer.name}: dx tree does not match x"
    got = [g for g, m in zip(dx_leaves, is_f) if m]
    assert all(g is None for g, m in zip(dx_leaves, is_f) if not m), \
        f"{layer.name}: integer inputs must get dx=None"
    for g, r, a in zip(got, ref_dxf, xf):
        assert g.dtype == a.dtype, f"{layer.name}: dx dtype {g.dtype} != x dtype {a.dtype}"
        _close_normwise(g, r, rtol, f"{layer.name} dx")

    # 3. jit vs eager
    def manual(p, x, dy):
        out, r = layer.fwd(p, x, key=key)
        return out, layer.bwd(r, dy)

    assert_trees_close(jax.jit(manual)(params, x, dy), manual(params, x, dy), 1e-5,
                       f"{layer.name} jit vs eager")

    # 2. float64 finite differences (and the checker's own manual-vs-autodiff)
    report = fn.check_layer(layer, params, x, key=key, dy=dy, seed=seed,
                            finite_differences=fd)
    assert report.ok, str(report)
    return report


PARAMS_AS_OUTPUT = fn.named(
    "params_as_output",
    lambda key, shape: None,
    lambda p, x, *, key=None: (p, None),
    lambda res, dy: (dy, None),
)


def assert_loss_correct(loss, pred, target, *, rtol=1e-5):
    """Manual loss backward vs jax.vjp, vs float64 finite differences, and under jit."""
    value, res = loss.fwd(pred, target)
    assert value.shape == ()
    g = jnp.asarray(0.7, value.dtype)  # a non-unit seed catches a forgotten `g *`
    manual = loss.bwd(res, g)
    assert manual.dtype == pred.dtype, f"{loss.name}: dpred dtype {manual.dtype} != {pred.dtype}"
    _, pullback = jax.vjp(lambda p: loss.fwd(p, target)[0], pred)
    (ref,) = pullback(g)
    _close_normwise(manual, ref, rtol, f"{loss.name} dpred")
    jitted = jax.jit(lambda p, t: loss.bwd(loss.fwd(p, t)[1], g))(pred, target)
    _close_normwise(jitted, manual, 1e-5, f"{loss.name} jit vs eager")
    # float64 finite differences: a "model" whose output is its params (the logits)
    report = fn.check_grads(PARAMS_AS_OUTPUT, loss, pred, jnp.zeros_like(pred), target)
    assert report.ok, str(report)
    return report
