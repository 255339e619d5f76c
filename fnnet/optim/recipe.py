"""Recipes: an optimizer (or schedule) as ``factory(**hyperparameters)``, numbers as data.

Every factory in :mod:`fnnet.optim` (``sgd``, ``adam``, ``chain``, ``masked``,
the schedules, ...) is wrapped by :func:`recorded`, which attaches to what it
builds the call that built it: ``(factory, arguments)``, stored as the
attribute ``fnnet_recipe`` of the optimizer's ``update`` function (an
``Optimizer`` is a NamedTuple and takes no attributes itself) or of the
schedule function. From it:

* :func:`hparams_of(opt) <hparams_of>` -> ``{"learning_rate": 0.1, "momentum": 0.9, ...}``
  (the arguments, defaults filled in; ``None`` for an optimizer fnnet did not build);
* :func:`recipe_of(opt) <recipe_of>` -> a :class:`Recipe`, a pytree whose LEAVES
  are the numeric hyperparameters (nested optimizers and schedules included)
  and whose tree structure holds the factories and everything else (bools,
  strings, masks, functions, and every number equal to 0, since zero often
  selects the structure: ``momentum=0`` has no momentum buffer);
* :func:`rebuild(recipe) <rebuild>` -> the optimizer again. Inside ``jit`` the
  leaves are tracers, so ONE compiled program serves every value of the
  hyperparameters::

      static, hparams = split_hparams(opt)      # None for a non-fnnet optimizer
      run = jax.jit(lambda params, ..., hparams, *, static: ..., static_argnames="static")
      # inside run:  opt = merge_hparams(static, hparams)

  ``split_hparams(opt) -> (static, hparams)`` (``static`` hashable: the recipe's
  treedef; ``hparams``: the list of numbers) and ``merge_hparams(static,
  hparams)`` are that split and its inverse.

A rebuilt optimizer updates exactly like the original up to float32 rounding of
its hyperparameters (a traced ``b2`` is a float32, a Python ``0.999`` enters
Adam's bias correction in float64).

The compiled training functions pass ``hparams_for(hparams, params)``: the
floating numbers as float32 unless the params hold a float64 leaf. A Python
number traced under x64 would be a float64 and pull a float32 model's scalar
arithmetic (``1 - b1``, a schedule) into float64; this way a float32 model
trains bit for bit the same with ``jax_enable_x64`` on and off.
"""

from __future__ import annotations

import inspect
import numbers

import jax
import numpy as np

from .. import structure
from ..static import Static

__all__ = ["recorded", "Recipe", "recipe_of", "hparams_of", "rebuild", "split_hparams",
           "merge_hparams", "hparams_for"]


def recorded(factory):
    """Decorate an optimizer/schedule factory so that what it returns carries its recipe
    (fnnet's one identity, :func:`fnnet.structure.recorded`, on ``update`` or on the
    schedule function)."""
    build = structure.recorded(factory)
    build.fnnet_factory = True
    return build


_raw = structure.recipe


def hparams_of(obj) -> dict | None:
    """The arguments (defaults filled in) of the fnnet factory call that built ``obj``
    (an optimizer or a schedule), or ``None`` if no fnnet factory built it."""
    raw = _raw(obj)
    return None if raw is None else dict(raw[1])


@jax.tree_util.register_pytree_node_class
class Recipe:
    """``factory(**hparams)`` as a pytree: numbers are leaves, the rest is structure."""

    def __init__(self, factory, hparams: dict):
        self.factory = factory
        self.hparams = hparams

    def tree_flatten(self):
        names = tuple(self.hparams)
        return (tuple(self.hparams[n] for n in names),), (self.factory, names)

    @classmethod
    def tree_unflatten(cls, aux, children):
        factory, names = aux
        return cls(factory, dict(zip(names, children[0])))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"Recipe({self.factory.__name__}({args}))"


class _Frozen:
    """A hashable pytree of hashable leaves (a mask of bools), rebuilt on decode."""

    def __init__(self, tree):
        leaves, self.treedef = jax.tree.flatten(tree)
        self.leaves = tuple(leaves)
        hash(self)

    def thaw(self):
        return self.treedef.unflatten(self.leaves)

    def __hash__(self):
        return hash((self.treedef, self.leaves))

    def __eq__(self, other):
        return isinstance(other, _Frozen) and (self.treedef, self.leaves) == (other.treedef, other.leaves)


def _is_number(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, numbers.Number) or isinstance(v, jax.core.Tracer):
        return True
    return isinstance(v, (np.ndarray, jax.Array)) and np.issubdtype(v.dtype, np.number)


def _is_zero(v) -> bool:
    return not isinstance(v, jax.core.Tracer) and np.ndim(v) == 0 and float(v) == 0.0


def _encode(v):
    if _raw(v) is not None:
        return recipe_of(v)
    if isinstance(v, tuple) and not hasattr(v, "_fields"):
        return tuple(_encode(x) for x in v)
    if _is_number(v):
        return Static(v if isinstance(v, numbers.Number) else v.item()) if _is_zero(v) else v
    try:
        hash(v)
        return Static(v)
    except TypeError:
        return Static(_Frozen(v))     # TypeError again if it cannot be keyed: no recipe


def _decode(v):
    if isinstance(v, Recipe):
        return rebuild(v)
    if isinstance(v, tuple):
        return tuple(_decode(x) for x in v)
    if isinstance(v, Static):
        return v.value.thaw() if isinstance(v.value, _Frozen) else v.value
    return v


def recipe_of(obj) -> Recipe | None:
    """``obj``'s :class:`Recipe`, or ``None`` if it was not built by fnnet factories
    (an optax optimizer) or holds an argument that cannot be hashed."""
    raw = _raw(obj)
    if raw is None:
        return None
    factory, args = raw
    try:
        return Recipe(factory, {k: _encode(v) for k, v in args.items()})
    except TypeError:
        return None


def rebuild(recipe, **overrides):
    """Call the recipe's factory again: ``rebuild(recipe_of(opt))`` is ``opt`` anew.

    ``recipe`` may also be an optimizer or schedule built by fnnet, and
    ``overrides`` replace top-level arguments: ``rebuild(opt, learning_rate=0.2)``.
    """
    if not isinstance(recipe, Recipe):
        got = recipe_of(recipe)
        if got is None:
            raise TypeError(f"rebuild: {recipe!r} was not built by an fnnet.optim factory; "
                            f"only those carry their hyperparameters")
        recipe = got
    args = {k: _decode(v) for k, v in recipe.hparams.items()}
    unknown = set(overrides) - set(args)
    if unknown:
        raise TypeError(f"rebuild: {recipe.factory.__name__} has no argument(s) "
                        f"{sorted(unknown)}; it takes {list(args)}")
    args.update(overrides)
    bound = inspect.BoundArguments(recipe.factory.fnnet_signature, args)
    return recipe.factory(*bound.args, **bound.kwargs)


def split_hparams(opt):
    """``(static, hparams)`` for an fnnet optimizer, ``None`` for any other.

    ``static`` is hashable (use it as a static argument of ``jax.jit``): the
    optimizer kind, its structural settings and which numbers are zero.
    ``hparams`` is the list of its numeric hyperparameters (pass it as traced data).
    """
    recipe = recipe_of(opt)
    if recipe is None:
        return None
    hparams, static = jax.tree.flatten(recipe)
    try:
        hash(static)
    except TypeError:
        return None
    return static, hparams


def merge_hparams(static, hparams):
    """The optimizer from :func:`split_hparams`'s two parts (``hparams`` may be traced)."""
    return rebuild(static.unflatten(hparams))


def hparams_for(hparams, params):
    """``hparams`` (from :func:`split_hparams`) in the precision of ``params``: floating
    numbers become float32 unless a params leaf is float64 (then they stay as given).

    Under x64 a traced Python float is a float64; cast like this, the optimizer's
    scalar arithmetic of a float32 model is float32 with x64 on and off alike.
    """
    if hparams is None or any(np.dtype(getattr(a, "dtype", np.float32)) == np.float64
                              for a in jax.tree.leaves(params)):
        return hparams

    def narrow(h):
        if isinstance(h, (float, np.floating)) or (
                isinstance(h, (np.ndarray, jax.Array)) and h.dtype == np.float64):
            return np.asarray(h, np.float32)[()]
        return h

    return [narrow(h) for h in hparams]
