"""Identity: an object is its constructor call, so equal models built twice compile once.

``jax.jit`` caches a compiled program per value of its static arguments. A
:class:`~fnnet.Layer`, a :class:`~fnnet.Loss` or an optimizer is a tuple of
closures, and Python compares closures by identity: ``serial(Dense(3), Relu)``
built twice would compile twice. Every fnnet constructor therefore records the
call that built its result, recipe-style (:func:`recorded`: ``(factory,
arguments)`` as ``fnnet_recipe`` on the object, or, for a NamedTuple, on its
``recipe_field`` member: a Layer's ``fwd``, a Regularizer's ``value``, an
optimizer's ``update``), and callable objects that are their constructor call
derive from :class:`Recorded`. :func:`structure` describes an object by that
call, its arguments described the same way, recursively:

* a recorded object: ``(factory, {argument: structure})``: ``Dense(3)`` built
  twice is equal, ``Dense(4)`` is not;
* ``None``, bools, numbers, strings, bytes (each with its type: ``1``, ``1.0`` and
  ``True`` differ), dtypes, tuples (elementwise; a hand-made ``Layer(init, fwd,
  bwd)``: its three functions), ``functools.partial``: by value;
* other hashable objects with their own ``==`` (classes, jitted functions,
  :class:`~fnnet.Static`): by ``==``;
* everything else by identity: functions without a recorded call (a hand-made
  layer's, a lambda: the same object is the same program, a new one compiles
  anew), lists, dicts and sets (mutable), arrays and other unhashable objects.

Nothing here reads code objects, closure cells or globals. :func:`keyed` wraps an
object with its structure, hashed once, for use as a static argument of
``jax.jit``; the wrapped object of the FIRST call is the one traced, later equal
ones reuse its compiled program.
"""

from __future__ import annotations

import collections
import functools
import inspect

import numpy as np

__all__ = ["recorded", "recipe", "Recorded", "structure", "keyed", "Keyed"]

_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _carrier(obj):
    """Where ``obj``'s recorded call lives (a NamedTuple takes no attributes)."""
    field = getattr(type(obj), "recipe_field", None)
    if isinstance(field, str):
        return getattr(obj, field)
    if callable(getattr(obj, "init", None)) and callable(getattr(obj, "update", None)):
        return obj.update           # an optimizer (optax's contract)
    return obj


def recipe(obj):
    """``(factory, arguments)`` of the recorded call that built ``obj``, else None."""
    return getattr(_carrier(obj), "fnnet_recipe", None)


def recorded(factory):
    """Decorate a constructor so that what it returns carries its call (its identity).

    The arguments are bound to the signature with defaults filled in, so
    ``Dense(3)`` and ``Dense(features=3)`` are the same call.
    """
    sig = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs):
        obj = factory(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        _carrier(obj).fnnet_recipe = (build, dict(bound.arguments))
        return obj

    build.fnnet_signature = sig
    return build


class Recorded:
    """A callable object that is its constructor call: equal and hashed by it (loss
    functions, named functions). Subclasses just define ``__init__``."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        self.fnnet_recipe = (cls, dict(list(bound.arguments.items())[1:]))
        return self

    def __eq__(self, other):
        return type(other) is type(self) and structure(self) == structure(other)

    def __hash__(self):
        return hash(structure(self))


class _Identity:
    """Compares by identity; holds ``obj`` so that its id is never reused."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def structure(obj):
    """A hashable description of ``obj``: equal for objects built by equal calls."""
    return _structure(obj, {})


def _structure(obj, memo):
    if isinstance(obj, _SCALARS):
        return (type(obj), obj)
    if id(obj) in memo:          # shared sub-objects (a serial's layers) are described once
        return memo[id(obj)][1]
    out = _describe(obj, lambda v: _structure(v, memo))
    memo[id(obj)] = (obj, out)   # holding obj keeps its id unique during this call
    return out


def _describe(obj, sub):
    call = recipe(obj)
    if call is not None:
        factory, arguments = call
        return ("call", _Identity(factory), tuple((k, sub(v)) for k, v in arguments.items()))
    if isinstance(obj, np.dtype):
        return ("dtype", obj.str)
    if isinstance(obj, tuple):
        return (type(obj), tuple(sub(v) for v in obj))
    if isinstance(obj, functools.partial):
        return ("partial", sub(obj.func), sub(obj.args),
                tuple(sorted((k, sub(v)) for k, v in obj.keywords.items())))
    if isinstance(obj, (list, dict, set, bytearray)) or type(obj).__eq__ is object.__eq__:
        return _Identity(obj)    # mutable, or compared by identity anyway (functions)
    try:
        hash(obj)
    except TypeError:
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
    """Wrap ``obj`` for use as a structurally compared static argument of ``jax.jit``.

    An object keyed recently is described once (a model's description costs tens of
    microseconds, per call of ``fit``).
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
