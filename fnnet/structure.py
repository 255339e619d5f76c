"""Structural identity: equal models built twice compare equal, so compiled runs are reused.

``jax.jit`` caches a compiled program per value of its static arguments. A
:class:`~fnnet.Layer`, a :class:`~fnnet.Loss` or an optimizer is a tuple of
closures, and Python compares closures by identity: ``serial(Dense(3), Relu)``
built twice would compile twice. :func:`structure` gives them a *structural*
identity instead: a function is described by its code, the values in its
closure cells, its defaults, the module globals its code reads and its
``fnnet_*`` attributes, recursively. Two closures made by the same constructor
with equal arguments (``Dense(3)`` twice, ``sgd(0.1)`` twice) are therefore
equal.

What is compared by value: ``None``, bools, ints, floats, complex numbers,
strings, bytes (each with its type, so ``1``, ``1.0`` and ``True`` differ),
dtypes, tuples (NamedTuples: Layers, Losses, Optimizers), ``functools.partial``
and Python functions (as above). Lists, dicts and sets (mutable) are compared
by identity, and so is anything unhashable (arrays): an array captured in a
closure makes the layer equal only to itself, never wrongly equal to another.
Other hashable objects (classes, JAX's jitted functions,
:class:`~fnnet.Static`) are compared with ``==``; library functions (JAX,
NumPy) and fnnet's module-level functions by identity. Recursion deeper
than :data:`MAX_DEPTH` also falls back to identity.

:func:`keyed` wraps an object with its structure, hashed once, for use as a
static argument of ``jax.jit``; the wrapped object of the FIRST call is the one
traced, later equal ones reuse its compiled program.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import types

import numpy as np

__all__ = ["structure", "keyed", "Keyed", "MAX_DEPTH"]

MAX_DEPTH = 40
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


class _Identity:
    """Compares by identity; holds ``obj`` so that its id is never reused."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def _code_names(code, out):
    """Global names read by ``code`` and by the code objects nested in it."""
    out.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_names(const, out)
    return out


# Functions of these libraries (and fnnet's module-level functions) are stable objects:
# compared by identity. fnnet's closures (``Dense(3)``'s fwd) are compared structurally.
_LIBRARIES = frozenset({"jax", "jaxlib", "numpy", "scipy", "optax", "chex", "flax", "equinox",
                        "torch", "functools", "builtins"})


# Function attributes that only restate the closure (an optimizer's recorded factory call).
_DERIVED = frozenset({"fnnet_recipe"})


def _function(f, depth, active, memo):
    package = (getattr(f, "__module__", None) or "").split(".")[0]
    if package in _LIBRARIES or (package == "fnnet" and "<locals>" not in f.__qualname__):
        return _Identity(f)         # a library's module-level function: one object for good
    if id(f) in active:                       # a recursive closure: its code is enough
        return ("recursive", f.__code__)
    active = active | {id(f)}
    sub = partial_structure(depth + 1, active, memo)
    cells = tuple(("empty",) if _empty(c) else sub(c.cell_contents) for c in (f.__closure__ or ()))
    glob = f.__globals__
    names = sorted(n for n in _code_names(f.__code__, set()) if n in glob)
    globals_ = tuple((n, sub(glob[n])) for n in names
                     if not isinstance(glob[n], types.ModuleType))
    attrs = tuple(sorted((k, sub(v)) for k, v in vars(f).items() if k not in _DERIVED))
    kwdefaults = tuple(sorted((k, sub(v)) for k, v in (f.__kwdefaults__ or {}).items()))
    return ("function", f.__code__, cells, sub(f.__defaults__), kwdefaults, globals_, attrs)


def _empty(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return True
    return False


def partial_structure(depth, active, memo):
    return lambda obj: _structure(obj, depth, active, memo)


def structure(obj):
    """A hashable description of ``obj``: equal for structurally equal objects."""
    return _structure(obj, 0, frozenset(), {})


def _structure(obj, depth, active, memo):
    if isinstance(obj, _SCALARS):
        return (type(obj), obj)
    if depth > MAX_DEPTH:
        return _Identity(obj)
    if id(obj) in memo:          # shared sub-objects (a serial's layers) are described once
        return memo[id(obj)][1]
    out = _describe(obj, depth, active, memo)
    memo[id(obj)] = (obj, out)   # holding obj keeps its id unique during this call
    return out


def _describe(obj, depth, active, memo):
    sub = partial_structure(depth + 1, active, memo)
    if isinstance(obj, np.dtype):
        return ("dtype", obj.str)
    if isinstance(obj, types.FunctionType):
        return _function(obj, depth, active, memo)
    if isinstance(obj, functools.partial):
        return ("partial", sub(obj.func), sub(obj.args),
                tuple(sorted((k, sub(v)) for k, v in obj.keywords.items())))
    if isinstance(obj, types.MethodType):
        return ("method", sub(obj.__func__), sub(obj.__self__))
    if isinstance(obj, tuple):
        return (type(obj), tuple(sub(v) for v in obj))
    if dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen:   # a layer's record
        return (type(obj), tuple(sub(getattr(obj, f.name)) for f in dataclasses.fields(obj)))
    if isinstance(obj, (list, dict, set, bytearray)):
        return _Identity(obj)                  # mutable: may change after it was described
    try:
        hash(obj)
    except TypeError:
        return _Identity(obj)
    if type(obj).__eq__ is object.__eq__:      # plain objects: identity anyway
        return _Identity(obj)
    return ("value", type(obj), obj)


class Keyed:
    """``obj`` with its :func:`structure`, hashed once: a static argument for ``jax.jit``."""

    __slots__ = ("obj", "key", "_hash")

    def __init__(self, obj):
        self.obj = obj
        self.key = structure(obj)
        self._hash = hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Keyed) and self._hash == other._hash and self.key == other.key

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return f"Keyed({self.obj!r})"


# The last few objects keyed, by identity (each held, so its id stays its own).
_RECENT: "collections.OrderedDict[int, Keyed]" = collections.OrderedDict()
RECENT_SIZE = 64


def keyed(obj) -> Keyed:
    """Wrap ``obj`` for use as a structurally compared static argument.

    The description of an object seen recently is reused (the same object is
    described once, as ``jax.jit`` itself treats a function as fixed once seen).
    """
    if isinstance(obj, Keyed):
        return obj
    hit = _RECENT.get(id(obj))
    if hit is not None and hit.obj is obj:
        _RECENT.move_to_end(id(obj))
        return hit
    k = _RECENT[id(obj)] = Keyed(obj)
    if len(_RECENT) > RECENT_SIZE:
        _RECENT.popitem(last=False)
    return k
