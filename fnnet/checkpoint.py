"""Checkpoints: ``save(path, tree)`` / ``load(path, like=None)`` as a plain ``.npz``.

The file is an ordinary NumPy ``.npz`` (a zip of ``.npy`` arrays, no pickle;
``np.load(path, allow_pickle=False)`` opens it):

* one array per leaf, keyed by its pytree path (``jax.tree_util.keystr``):
  ``"[0]['w']"``, ``"[1][0].count"``, ...;
* ``"__fnnet_tree__"``: a JSON description of the containers (as UTF-8 bytes),
  so a file can be rebuilt without knowing its structure in advance.

Supported trees: nested ``dict`` (str or int keys), ``tuple``, ``list``,
``NamedTuple`` (optimizer states), ``None``, and leaves that are arrays or
Python/NumPy scalars. Typed PRNG keys (``jax.random.key``) are stored as their
raw ``key_data`` plus the implementation's name and come back as typed keys.

``load(path, like=tree)`` rebuilds exactly ``like``'s structure (NamedTuples
included) and checks that the file has the same leaves (paths), container
types, shapes and dtypes, naming every difference. ``load(path)`` without
``like`` returns nested dicts/tuples/lists; a NamedTuple comes back as a dict
of its fields (pass ``like=opt.init(params)`` to get the state classes back).
Leaves are returned as ``jax.Array``.

Writes are atomic: the file is written to a temporary file in the same
directory, flushed to disk, then moved over ``path`` with ``os.replace``; a
crash never leaves a half-written checkpoint under ``path``. A truncated or
corrupted file raises :class:`CheckpointError` (zip CRCs are verified on every
read), never a partial load.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import DictKey, GetAttrKey, SequenceKey, keystr

__all__ = ["save", "load", "CheckpointError"]

TREE_KEY = "__fnnet_tree__"
FORMAT = "fnnet-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back whole (truncated, corrupted, not fnnet's)."""


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _is_prng_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _name(path) -> str:
    return keystr(path) or "<root>"


def _describe(tree, path=(), arrays=None, where="save"):
    """JSON-able description of ``tree``; fills ``arrays[name] = np.ndarray`` if given."""
    if tree is None:
        return {"t": "none"}
    if isinstance(tree, dict):
        keys = sorted(tree)  # jax's order
        for k in keys:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"{where}: dict keys must be str or int, got {k!r} at {_name(path)}")
        return {"t": "dict", "keys": [[type(k).__name__, k] for k in keys],
                "c": [_describe(tree[k], path + (DictKey(k),), arrays, where) for k in keys]}
    if _is_namedtuple(tree):
        fields = list(type(tree)._fields)
        return {"t": "namedtuple", "name": type(tree).__name__, "fields": fields,
                "c": [_describe(getattr(tree, f), path + (GetAttrKey(f),), arrays, where) for f in fields]}
    if isinstance(tree, (tuple, list)):
        return {"t": type(tree).__name__,
                "c": [_describe(c, path + (SequenceKey(i),), arrays, where) for i, c in enumerate(tree)]}
    if _is_prng_key(tree):
        if arrays is not None:
            arrays[_name(path)] = np.asarray(jax.random.key_data(tree))
        return {"t": "leaf", "prng": str(jax.random.key_impl(tree))}
    if isinstance(tree, (jax.Array, np.ndarray, np.generic, int, float, complex, bool)):
        if arrays is not None:
            arrays[_name(path)] = np.asarray(tree)
        return {"t": "leaf"}
    raise TypeError(f"{where}: unsupported node {type(tree).__name__} at {_name(path)}; checkpoints "
                    f"hold dicts, tuples, lists, NamedTuples, None and arrays")


def save(path, tree) -> None:
    """Write ``tree`` to ``path`` (exactly that name) as an ``.npz``, atomically."""
    arrays = {}
    desc = _describe(tree, (), arrays)
    meta = json.dumps({"format": FORMAT, "tree": desc})
    arrays[TREE_KEY] = np.frombuffer(meta.encode("utf-8"), np.uint8)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # Not tempfile.mkstemp: its 0600 mode would survive the rename; this file gets the
    # umask's permissions, like a file np.savez writes directly.
    tmp = os.path.join(directory, f"{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_all(path):
    """Every array in the file, read and CRC-checked, plus the tree description."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(bytes(arrays.pop(TREE_KEY)).decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"load: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    except FileNotFoundError:
        raise
    except CheckpointError:
        raise
    except KeyError:
        raise CheckpointError(f"load: {path} is not an fnnet checkpoint (no {TREE_KEY!r} entry)") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, UnicodeDecodeError) as err:
        raise CheckpointError(f"load: {path} is truncated or corrupted and was not loaded "
                              f"({type(err).__name__}: {err})") from err
    return arrays, meta["tree"]


def _dict_keys(desc):
    return [int(k) if kind == "int" else k for kind, k in desc["keys"]]


def _entries(desc):
    """The path entries of an inner node's children, as jax names them."""
    if desc["t"] == "dict":
        return [DictKey(k) for k in _dict_keys(desc)]
    if desc["t"] == "namedtuple":
        return [GetAttrKey(f) for f in desc["fields"]]
    return [SequenceKey(i) for i in range(len(desc["c"]))]


def _leaf_specs(desc, path=()):
    """``{name: prng impl or None}`` for every leaf of a description, in order."""
    t = desc["t"]
    if t == "leaf":
        return {_name(path): desc.get("prng")}
    if t == "none":
        return {}
    entries = _entries(desc)
    out = {}
    for e, c in zip(entries, desc["c"]):
        out.update(_leaf_specs(c, path + (e,)))
    return out


def _leaf(array, prng):
    if prng is not None:
        return jax.random.wrap_key_data(jnp.asarray(array), impl=prng)
    return jnp.asarray(array)


def _build(desc, arrays, path=()):
    t = desc["t"]
    if t == "leaf":
        return _leaf(arrays[_name(path)], desc.get("prng"))
    if t == "none":
        return None
    children = [_build(c, arrays, path + (e,)) for e, c in zip(_entries(desc), desc["c"])]
    if t == "dict":
        return dict(zip(_dict_keys(desc), children))
    if t == "namedtuple":
        return dict(zip(desc["fields"], children))
    return tuple(children) if t == "tuple" else children


def _containers(desc, path=()):
    """``{name: container type}`` for every inner node (to name structural differences)."""
    t = desc["t"]
    if t == "leaf":
        return {}
    if t == "none":
        return {_name(path): "None"}
    label = f"NamedTuple {desc['name']}" if t == "namedtuple" else t
    out = {_name(path): label}
    entries = _entries(desc)
    for e, c in zip(entries, desc["c"]):
        out.update(_containers(c, path + (e,)))
    return out


def load(path, like=None):
    """Read a checkpoint written by :func:`save`.

    With ``like``: returns a tree with ``like``'s exact structure, after checking
    leaf paths, container types, shapes and dtypes (``ValueError`` listing every
    difference). Without: nested dicts/tuples/lists (NamedTuples as dicts).
    Raises :class:`CheckpointError` for a truncated or corrupted file.
    """
    path = os.fspath(path)
    arrays, desc = _read_all(path)
    stored = _leaf_specs(desc)
    missing_arrays = [name for name in stored if name not in arrays]
    if missing_arrays:
        raise CheckpointError(f"load: {path} is incomplete; missing arrays {missing_arrays}")
    if like is None:
        return _build(desc, arrays)

    like_desc = _describe(like, where="load (like)")
    wanted = _leaf_specs(like_desc)
    problems = []
    missing = [n for n in wanted if n not in stored]
    extra = [n for n in stored if n not in wanted]
    if missing:
        problems.append(f"missing in the file: {', '.join(missing)}")
    if extra:
        problems.append(f"in the file but not in `like`: {', '.join(extra)}")
    have_c, want_c = _containers(desc), _containers(like_desc)
    for name in want_c:
        if name in have_c and have_c[name] != want_c[name]:
            problems.append(f"{name}: container is {have_c[name]} in the file, {want_c[name]} in `like`")
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(like)
    for p, leaf in leaves_with_path:
        name = _name(p)
        if name not in stored:
            continue
        a, prng = arrays[name], stored[name]
        want_prng = wanted[name]
        shape = tuple(jnp.shape(leaf))
        got_shape = a.shape[: a.ndim - 1] if prng else a.shape  # key data has a trailing axis
        if got_shape != shape:
            problems.append(f"{name}: shape {got_shape} in the file, {shape} in `like`")
        got_dtype = f"key<{prng}>" if prng else str(a.dtype)
        want_dtype = f"key<{want_prng}>" if want_prng else str(np.asarray(leaf).dtype)
        if got_dtype != want_dtype:
            problems.append(f"{name}: dtype {got_dtype} in the file, {want_dtype} in `like`")
    if problems:
        raise ValueError(f"load: {path} does not match `like`:\n  - " + "\n  - ".join(problems))
    return jax.tree_util.tree_unflatten(
        treedef, [_leaf(arrays[_name(p)], stored[_name(p)]) for p, _ in leaves_with_path])
