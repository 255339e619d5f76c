"""``make_layer``: a :class:`~fnnet.Layer` from a forward and a hand-written backward.

The contract of a layer is three functions (``init``, ``fwd``, ``bwd``; see
:mod:`fnnet.core`). ``make_layer`` writes the plumbing around the two that carry
the math, so a new layer is a few lines::

    def fwd(params, x):                 # -> (y, residuals)
        s = jax.nn.sigmoid(params["beta"] * x)
        return x * s, (x, s, params["beta"])

    def bwd(res, dy):                   # -> (dparams, dx), the VJP by hand
        x, s, beta = res
        du = dy * x * s * (1 - s)       # cotangent of u = beta x
        return {"beta": jnp.sum(du * x)}, dy * s + du * beta

    Swish = fn.make_layer("Swish", fwd, bwd, init=lambda key, shape: {"beta": jnp.ones(())})

Forms (``init=None`` makes a parameter-free layer, params ``()``)::

    with params:      fwd(params, x) -> (y, res)     bwd(res, dy) -> (dparams, dx)
    parameter-free:   fwd(x) -> (y, res)             bwd(res, dy) -> dx
    needs_key=True:   fwd(..., key=key) as well      (key None in inference)

What the wrapper adds, at trace time only (static shapes; nothing runs under ``jit``):

* ``fwd`` must return a pair ``(y, residuals)``: a ``TypeError`` naming the layer
  otherwise;
* ``dparams`` must have the params' tree and each leaf its param's shape; the
  common slip, a per-example gradient of a shared param (shape ``(batch, ...)``
  for a param of shape ``()``), gets the hint to sum over the axes it was
  broadcast along. ``dx`` must have ``x``'s shape (and tree, for a tuple input);
* ``dparams`` and ``dx`` are cast to the params' and ``x``'s dtypes (the
  contract), and an integer input's ``dx`` is ``None`` (integers have no
  gradient) whatever ``bwd`` returned for it.

Everything else is the ordinary contract: the layer composes with ``serial``,
trains with ``fit``, and ``fn.check_layer`` / ``fn.check_grads`` /
``fn.gradient_diagnostics`` check it like a built-in one. A layer with state
(running statistics) or per-example rules is written with :func:`fnnet.named`
directly (see ``fnnet/layers/batchnorm.py``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .core import Layer, Static, named, no_params
from .structure import recorded

__all__ = ["make_layer"]


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)


def _spec(tree):
    """A hashable description of a tree of arrays: its treedef and leaf shapes/dtypes."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(jnp.shape(a)), jnp.result_type(a).name) for a in leaves)


def _fmt(path) -> str:
    return jax.tree_util.keystr(path)


@recorded
def make_layer(name: str, fwd: Callable, bwd: Callable, *, init: Callable | None = None,
               needs_key: bool = False, input_dtype=None) -> Layer:
    """A :class:`~fnnet.Layer` named ``name`` from ``fwd`` and its hand-written ``bwd``.

    Args:
      name: the layer's name in errors and reports (``"Swish"``).
      fwd: ``fwd(params, x) -> (y, residuals)``; ``fwd(x) -> (y, residuals)`` when
        ``init`` is None. ``residuals`` is whatever ``bwd`` needs: arrays, pytrees of
        arrays, ``fn.Static(...)`` for static values (a shape).
      bwd: ``bwd(residuals, dy) -> (dparams, dx)``; ``-> dx`` when ``init`` is None.
      init: ``init(key, input_shape) -> params`` (``input_shape``: ONE example's
        shape); ``None`` for a parameter-free layer (params ``()``).
      needs_key: the layer is random in training: ``fwd`` also takes ``key=`` (a PRNG
        key in training, ``None`` in inference), and training it without a key is an
        error (as for Dropout).
      input_dtype: what the layer takes as a model's first layer when ``init`` infers
        shapes (default float32; ``jnp.int32`` for ids).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"make_layer: name must be a non-empty string, got {name!r}")
    for what, f in (("fwd", fwd), ("bwd", bwd)) + ((("init", init),) if init is not None else ()):
        if not callable(f):
            raise TypeError(f"make_layer({name!r}): {what} must be a function, got "
                            f"{type(f).__name__}")
    has_params = init is not None

    def layer_fwd(params, x, *, key=None):
        args = (params, x) if has_params else (x,)
        out = fwd(*args, key=key) if needs_key else fwd(*args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{name}: fwd must return a pair (y, residuals), got "
                            f"{type(out).__name__}" + (f" of {len(out)} entries"
                                                       if isinstance(out, tuple) else "")
                            + "; residuals are what bwd needs (None if nothing)")
        y, res = out
        return y, (res, Static((_spec(params), _spec(x))))

    def layer_bwd(res, dy):
        res, meta = res
        (p_def, p_leaves), (x_def, x_leaves) = meta.value
        out = bwd(res, dy)
        if has_params:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"{name}: bwd must return a pair (dparams, dx), got "
                                f"{type(out).__name__}")
            dparams, dx = out
        else:
            dparams, dx = (), out
        return _check_dparams(name, dparams, p_def, p_leaves), _check_dx(name, dx, x_def, x_leaves)

    return named(name, init if has_params else no_params, layer_fwd, layer_bwd,
                 needs_key=needs_key, input_dtype=input_dtype)


def _check_dparams(name, dparams, p_def, p_leaves):
    got, treedef = jax.tree_util.tree_flatten_with_path(dparams)
    if treedef != p_def:
        raise ValueError(f"{name}: bwd returned dparams with tree {treedef}, but the params have "
                         f"tree {p_def}; return gradients with exactly the params' structure")
    out = []
    for (path, g), (shape, dtype) in zip(got, p_leaves):
        if tuple(jnp.shape(g)) != shape:
            hint = (f"; a param shared by many entries gets the SUM of their gradients (sum "
                    f"over the batch and every axis it was broadcast along)"
                    if jnp.ndim(g) > len(shape) else "")
            raise ValueError(f"{name}: bwd returned dparams{_fmt(path)} of shape "
                             f"{tuple(jnp.shape(g))}, but params{_fmt(path)} has shape {shape}"
                             f"{hint}")
        out.append(jnp.asarray(g).astype(dtype))
    return jax.tree.unflatten(treedef, out)


def _check_dx(name, dx, x_def, x_leaves):
    got, treedef = jax.tree.flatten(dx, is_leaf=lambda a: a is None)
    if len(got) != len(x_leaves):
        raise ValueError(f"{name}: bwd returned dx with {len(got)} arrays for an input of "
                         f"{len(x_leaves)}; dx must have the input's tree (x itself for one "
                         f"array)")
    out = []
    for i, (g, (shape, dtype)) in enumerate(zip(got, x_leaves)):
        if not jnp.issubdtype(dtype, jnp.floating):
            out.append(None)          # integers have no gradient
            continue
        if g is None or tuple(jnp.shape(g)) != shape:
            where = "dx" if len(x_leaves) == 1 else f"dx[{i}]"
            raise ValueError(f"{name}: bwd returned {where} of shape "
                             f"{None if g is None else tuple(jnp.shape(g))}, but the input has "
                             f"shape {shape}; dx is the gradient w.r.t. x, shaped like x")
        out.append(jnp.asarray(g).astype(dtype))
    return jax.tree.unflatten(x_def, out)
