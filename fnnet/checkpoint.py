"""Checkpoints: ``save(path, tree)`` / ``load(path, like=None)`` as a plain ``.npz``.

The file is an ordinary NumPy ``.npz`` (a zip of ``.npy`` arrays, no pickle;
``np.load(path, allow_pickle=False)`` opens it):

* one array per leaf, keyed by its pytree path (``jax.tree_util.keystr``):
  ``"[0]['w']"``, ``"[1][0].count"``, ...; stored little-endian. Dtypes that
  NumPy itself lacks (``bfloat16``, ``float8_*``, ``int4``, ... from
  ``ml_dtypes``) are stored as their raw bits (unsigned ints of the same width)
  and come back in their own dtype, bit for bit;
* ``"__fnnet_tree__"``: a JSON description (as UTF-8 bytes) of the containers
  and of every leaf: dtype, shape and the SHA-256 of its stored bytes, so a file
  can be rebuilt without knowing its structure in advance;
* the zip comment ``fnnet-checkpoint-2 sha256=<hex>``: the SHA-256 of that
  description.

Supported trees: nested ``dict`` (str or int keys), ``tuple``, ``list``,
``NamedTuple`` (optimizer states), ``None``, and leaves that are arrays or
Python/NumPy scalars of a numeric dtype. Typed PRNG keys (``jax.random.key``)
are stored as their raw ``key_data`` plus the implementation's name and come
back as typed keys.

``load(path, like=tree)`` rebuilds exactly ``like``'s structure (NamedTuples
included) and checks that the file has the same leaves (paths), container
types, shapes and dtypes, naming every difference (``ValueError``).
``load(path)`` without ``like`` returns nested dicts/tuples/lists and rebuilds
each NamedTuple (optimizer states, ``MixedPrecisionParams``) from the class the
file names (module and qualified name, stored since fnnet 0.1): it is looked up
among the modules ALREADY imported (loading a file never imports anything) and
used if it still has the stored fields, so ``fn.load(path)["opt_state"]`` of an
fnnet optimizer is the NamedTuple state that ``opt.update`` takes. A class that
cannot be found (a user's NamedTuple whose module is not imported, a class defined
inside a function, a file of an older version) comes back as a dict of its fields,
with a ``UserWarning`` that names it; pass ``like=`` to get it exactly. Leaves are
returned as ``jax.Array``.

**Integrity.** ``load`` reads the whole file and returns nothing unless all of
it checks out: every zip member is read whole (its CRC-32 verified), the
description's SHA-256 matches the zip comment, every array's ``.npy`` header
matches the description's dtype and shape, and every array's bytes match its
SHA-256. Anything else -- a truncated file, a flipped bit anywhere, a
hand-made ``.npz``, a ``.npy`` file, a directory, a missing file -- is a
:class:`CheckpointError` naming the file and the problem; a wrong array never
loads. (Files of the older format ``fnnet-checkpoint-1``, which carry no
digests, still load, checked by the zip CRCs.)

**Atomic, verified writes.** ``save`` writes to a temporary file
``<name>.fnnet-tmp.<pid>.<host>.<random>`` in the same directory, flushes it to
disk, reads it back and verifies it as ``load`` would, and only then moves it
over ``path`` with ``os.replace`` (and syncs the directory). A crash or
``kill -9`` at any moment leaves ``path`` holding either the old or the new
complete checkpoint. The temporary file of a killed save is removed by the next
``save`` into that directory from the same host, once the process that wrote it
is gone (temporary files of running saves are never touched).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import socket
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import DictKey, GetAttrKey, SequenceKey, keystr

__all__ = ["save", "load", "write_atomically", "CheckpointError", "CheckpointNotFoundError"]

TREE_KEY = "__fnnet_tree__"
FORMAT = "fnnet-checkpoint-2"
LEGACY_FORMATS = ("fnnet-checkpoint-1",)  # no digests, no ml_dtypes; still readable
COMMENT_PREFIX = FORMAT.encode() + b" sha256="
TMP_MARK = ".fnnet-tmp."
NPY_MAGIC = b"\x93NUMPY"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back whole (missing, truncated, corrupted,
    not written by :func:`save`)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint's path (also a ``FileNotFoundError``)."""


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _is_prng_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _name(path) -> str:
    return keystr(path) or "<root>"


def _is_ml_dtype(dtype) -> bool:
    """bfloat16, float8_*, int4, ...: dtypes from ``ml_dtypes`` that ``.npy`` cannot name."""
    return dtype.type.__module__.startswith("ml_dtypes")


def _storage_dtype(dtype) -> np.dtype:
    """The dtype of a leaf's bytes on disk: little-endian; raw bits for ml_dtypes."""
    if _is_ml_dtype(dtype):
        return np.dtype(f"<u{dtype.itemsize}")
    return dtype.newbyteorder("<")


def _real_dtype(name: str) -> np.dtype:
    """The dtype a description names; ``ValueError`` for anything but a numeric dtype."""
    dtype = jnp.dtype(name)
    if dtype.kind not in "biufc" and not _is_ml_dtype(dtype):
        raise ValueError(f"unsupported dtype {name!r}")
    return dtype


def _digest(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _leaf_desc(array, path, arrays, where, extra=()):
    """A leaf's description; with ``arrays``, also stores its bytes under its name."""
    array = np.asarray(array)
    if array.dtype.kind not in "biufc" and not _is_ml_dtype(array.dtype):
        raise TypeError(f"{where}: unsupported dtype {array.dtype} at {_name(path)}; checkpoints "
                        f"hold numeric arrays (bool, int, float, complex, bfloat16, float8, ...)")
    desc = {"t": "leaf", **dict(extra)}
    if arrays is not None:
        array = np.asarray(array, order="C")
        store = _storage_dtype(array.dtype)
        stored = array.view(store) if _is_ml_dtype(array.dtype) else array.astype(store, copy=False)
        arrays[_name(path)] = stored
        desc.update(dtype=str(array.dtype.newbyteorder("=")), shape=list(array.shape),
                    sha256=_digest(stored.tobytes()))
    return desc


def _describe(tree, path=(), arrays=None, where="save"):
    """JSON-able description of ``tree``; fills ``arrays[name] = stored np.ndarray`` if given."""
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
                "module": type(tree).__module__, "qualname": type(tree).__qualname__,
                "c": [_describe(getattr(tree, f), path + (GetAttrKey(f),), arrays, where) for f in fields]}
    if isinstance(tree, (tuple, list)):
        return {"t": type(tree).__name__,
                "c": [_describe(c, path + (SequenceKey(i),), arrays, where) for i, c in enumerate(tree)]}
    if _is_prng_key(tree):
        return _leaf_desc(jax.random.key_data(tree), path, arrays, where,
                          {"prng": str(jax.random.key_impl(tree))})
    if isinstance(tree, (jax.Array, np.ndarray, np.generic, int, float, complex, bool)):
        return _leaf_desc(tree, path, arrays, where)
    raise TypeError(f"{where}: unsupported node {type(tree).__name__} at {_name(path)}; checkpoints "
                    f"hold dicts, tuples, lists, NamedTuples, None and arrays")


# --- writing -----------------------------------------------------------------

def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


_TMP_RE = re.compile(re.escape(TMP_MARK) + r"(\d+)\.([A-Za-z0-9-]+)\.[0-9a-f]{16}$")


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return False
    return False


def _remove_stale_temps(directory: str) -> None:
    """Delete the temporary files that killed saves on this host left in ``directory``."""
    if os.name != "posix":  # os.kill(pid, 0) only probes a process on POSIX
        return
    try:
        names = os.listdir(directory)
    except OSError:
        return
    host = _host()
    for name in names:
        m = _TMP_RE.search(name)
        if m and m.group(2) == host and _process_gone(int(m.group(1))):
            try:
                os.remove(os.path.join(directory, name))
            except OSError:
                pass  # removed concurrently by another save, or not ours to remove


def _write_npz(f, arrays: dict, meta: bytes) -> None:
    """The ``.npz`` as ``np.savez`` writes it (stored, no compression), plus our comment."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in {TREE_KEY: np.frombuffer(meta, np.uint8), **arrays}.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        zf.comment = COMMENT_PREFIX + _digest(meta).encode()


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path, write, *, verify=None) -> None:
    """Create the file ``path`` whole or not at all.

    ``write(tmp)`` creates a new file at ``tmp``, a name beside ``path`` (same directory,
    so the rename below cannot cross file systems; ``open(tmp, "x...")`` gives it the
    umask's permissions, as a direct write would). It is flushed to disk, ``verify(tmp)``
    (if given) may raise to abandon it, and only then is it renamed over ``path`` and the
    directory synced: a crash at any moment leaves the old ``path`` or the new one. The
    temporary files of writers killed earlier on this host are removed first. Every
    checkpoint format of fnnet writes through this one function."""
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    _remove_stale_temps(directory)
    tmp = os.path.join(directory, f"{os.path.basename(path)}{TMP_MARK}{os.getpid()}."
                                  f"{_host()}.{secrets.token_hex(8)}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def save(path, tree) -> None:
    """Write ``tree`` to ``path`` (exactly that name) as an ``.npz``: atomically, and
    verified by reading it back before it replaces ``path``."""
    arrays = {}
    desc = _describe(tree, (), arrays)
    meta = json.dumps({"format": FORMAT, "tree": desc}).encode("utf-8")

    def write(tmp):
        with open(tmp, "xb") as f:
            _write_npz(f, arrays, meta)

    def verify(tmp):
        try:
            with open(tmp, "rb") as f:
                _, written = _parse(tmp, f.read())
            if written != desc:
                raise CheckpointError("its description differs from the one written")
        except CheckpointError as err:
            raise CheckpointError(f"save: the file written did not read back intact, so {path} "
                                  f"was left unchanged (disk or memory fault?): {err}") from None

    write_atomically(path, write, verify=verify)


# --- reading -----------------------------------------------------------------

def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"load: no checkpoint at {path} (file not found); "
                                      f"check the path, or write one with fn.save") from None
    except IsADirectoryError:
        raise CheckpointError(f"load: {path} is a directory, not a checkpoint; pass the path "
                              f"of the .npz file that fn.save wrote") from None


def _read_npy(raw: bytes):
    """``(dtype, shape, fortran_order, payload)`` of one ``.npy`` member, its size checked."""
    f = io.BytesIO(raw)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy version {version} is not one fnnet writes")
    if dtype.hasobject:
        raise ValueError(f"unexpected .npy header (dtype {dtype})")
    payload = raw[f.tell():]
    if len(payload) != dtype.itemsize * math.prod(shape):
        raise ValueError(f"{len(payload)} data bytes for shape {shape} of {dtype}")
    return dtype, tuple(shape), fortran, payload


def _leaf_specs(desc, path=()):
    """``{name: leaf description}`` for every leaf of a description, in order."""
    t = desc["t"]
    if t == "leaf":
        return {_name(path): desc}
    if t == "none":
        return {}
    if t not in ("dict", "namedtuple", "tuple", "list"):
        raise ValueError(f"unknown node type {t!r}")
    entries = _entries(desc)
    if len(entries) != len(desc["c"]):
        raise ValueError(f"{_name(path)}: {len(entries)} keys for {len(desc['c'])} children")
    out = {}
    for e, c in zip(entries, desc["c"]):
        out.update(_leaf_specs(c, path + (e,)))
    return out


def _array(spec, dtype, shape, fortran, payload, legacy: bool):
    """One leaf as ``np.ndarray`` in its real dtype, checked against its description."""
    if legacy:  # np.savez wrote it: any layout and byte order, no digest
        if dtype.kind not in "biufc":
            raise ValueError(f"raw dtype {dtype.str} (an older fnnet stored a bfloat16/float8 "
                             f"array without its dtype); it cannot be restored, re-save it")
        data = np.frombuffer(payload, dtype).reshape(shape, order="F" if fortran else "C")
        return data.astype(dtype.newbyteorder("="), copy=False)
    real = _real_dtype(spec["dtype"])
    if dtype != _storage_dtype(real) or fortran or list(shape) != spec["shape"]:
        raise ValueError(f"header says {dtype.str} {shape}, the description "
                         f"{spec['dtype']} {tuple(spec['shape'])}")
    if _digest(payload) != spec["sha256"]:
        raise ValueError("its bytes do not match their SHA-256")
    data = np.frombuffer(payload, dtype)
    return (data.view(real) if _is_ml_dtype(real) else data.astype(real, copy=False)).reshape(shape)


def _parse(path: str, raw: bytes):
    """``(arrays, tree description)``: every array read and verified.

    Raises :class:`CheckpointError` for anything that is not a whole, intact checkpoint.
    """
    if raw.startswith(NPY_MAGIC):
        raise CheckpointError(f"load: {path} is a .npy file (one array, as np.save writes), "
                              f"not an fnnet checkpoint; read it with np.load, or write "
                              f"checkpoints with fn.save(path, tree)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        names = zf.namelist()
    except Exception as err:  # noqa: BLE001 -- any failure here means a broken file
        kind = "is empty" if not raw else "is not an .npz (zip) file, or is truncated or corrupted"
        raise CheckpointError(f"load: {path} {kind} and was not loaded "
                              f"({type(err).__name__}: {err})") from None
    members = {n[:-4] if n.endswith(".npy") else n for n in names}
    if TREE_KEY not in members:
        shown = ", ".join(repr(n) for n in sorted(members)[:5]) + (", ..." if len(members) > 5 else "")
        raise CheckpointError(f"load: {path} is not an fnnet checkpoint (no {TREE_KEY!r} entry; "
                              f"it holds {shown or 'nothing'}; or its zip directory is corrupted). fnnet reads files written by "
                              f"fn.save(path, tree); read other .npz files with np.load")
    try:
        if len(set(names)) != len(names) or any(not n.endswith(".npy") for n in names):
            raise ValueError("duplicate or unexpected zip entries")
        *_, meta = _read_npy(zf.read(TREE_KEY + ".npy"))
        meta = bytes(meta)
        top = json.loads(meta.decode("utf-8"))
        fmt = top["format"] if isinstance(top, dict) else None
        if fmt not in (FORMAT, *LEGACY_FORMATS):
            raise CheckpointError(f"load: {path} has format {fmt!r}, expected {FORMAT!r} "
                                  f"(written by a newer fnnet, or not an fnnet checkpoint)")
        legacy = fmt != FORMAT
        if not legacy and zf.comment != COMMENT_PREFIX + _digest(meta).encode():
            raise ValueError("the description does not match its SHA-256 (zip comment)")
        desc = top["tree"]
        specs = _leaf_specs(desc)
        if members - {TREE_KEY} != set(specs):
            extra, missing = sorted(members - {TREE_KEY} - set(specs)), sorted(set(specs) - members)
            raise ValueError(f"entries do not match the description (missing {missing}, "
                             f"unexpected {extra})")
        arrays = {}
        for name, spec in specs.items():
            try:
                arrays[name] = _array(spec, *_read_npy(zf.read(name + ".npy")), legacy)
            except Exception as err:  # noqa: BLE001
                raise ValueError(f"array {name}: {err}") from err
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 -- zipfile/npy/json raise many types on bad bytes
        raise CheckpointError(f"load: {path} is truncated or corrupted and was not loaded "
                              f"({type(err).__name__}: {err})") from None
    return arrays, desc


def _read_all(path):
    """Every array in the file, read and verified, plus the tree description."""
    return _parse(path, _read_bytes(path))


def _dict_keys(desc):
    return [int(k) if kind == "int" else k for kind, k in desc["keys"]]


def _entries(desc):
    """The path entries of an inner node's children, as jax names them."""
    if desc["t"] == "dict":
        return [DictKey(k) for k in _dict_keys(desc)]
    if desc["t"] == "namedtuple":
        return [GetAttrKey(f) for f in desc["fields"]]
    return [SequenceKey(i) for i in range(len(desc["c"]))]


def _leaf(array, prng):
    if prng is not None:
        return jax.random.wrap_key_data(jnp.asarray(array), impl=prng)
    return jnp.asarray(array)


def _build(desc, arrays, path=(), unresolved=None):
    """The tree a description describes; NamedTuples whose class cannot be found are
    rebuilt as dicts of their fields and listed in ``unresolved``."""
    unresolved = [] if unresolved is None else unresolved
    t = desc["t"]
    if t == "leaf":
        return _leaf(arrays[_name(path)], desc.get("prng"))
    if t == "none":
        return None
    children = [_build(c, arrays, path + (e,), unresolved)
                for e, c in zip(_entries(desc), desc["c"])]
    if t == "dict":
        return dict(zip(_dict_keys(desc), children))
    if t == "namedtuple":
        cls = _namedtuple_class(desc)
        if cls is not None:
            return cls(*children)
        unresolved.append(f"{_name(path)}: {desc.get('module', '?')}.{desc.get('qualname', desc['name'])}")
        return dict(zip(desc["fields"], children))
    return tuple(children) if t == "tuple" else children


def _namedtuple_class(desc):
    """The NamedTuple class a description names, if its module is ALREADY imported
    (nothing is imported because a file says so) and it still has the same fields;
    else None. fnnet's own states (optimizers, mixed precision) always resolve."""
    import sys

    module = sys.modules.get(desc.get("module", ""))
    obj = module
    for part in desc.get("qualname", "<locals>").split("."):
        if obj is None or part == "<locals>":
            return None
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, tuple) and \
            list(getattr(obj, "_fields", ())) == list(desc["fields"]):
        return obj
    return None


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
    difference). Without: nested dicts/tuples/lists, NamedTuples rebuilt from their
    already-imported classes (else dicts of their fields, with a warning).
    Raises :class:`CheckpointError` for a missing, truncated, corrupted or foreign
    file (:class:`CheckpointNotFoundError`, also a ``FileNotFoundError``, when there
    is no file); nothing is returned unless every array checked out.
    """
    path = os.fspath(path)
    arrays, desc = _read_all(path)
    stored = {name: spec.get("prng") for name, spec in _leaf_specs(desc).items()}
    if like is None:
        unresolved = []
        try:
            tree = _build(desc, arrays, unresolved=unresolved)
        except Exception as err:  # noqa: BLE001 -- e.g. an unknown PRNG implementation name
            raise CheckpointError(f"load: {path} holds a tree that cannot be rebuilt "
                                  f"({type(err).__name__}: {err})") from None
        if unresolved:
            import warnings

            warnings.warn(f"load: {path}: these NamedTuples came back as dicts of their fields, "
                          f"their classes are not imported (or no longer have the stored "
                          f"fields): {'; '.join(unresolved[:5])}"
                          f"{' ...' if len(unresolved) > 5 else ''}. Import their modules "
                          f"before loading, or pass like= (e.g. like={{'opt_state': "
                          f"opt.init(params), ...}}) to get the exact structure back.",
                          UserWarning, stacklevel=2)
        return tree

    like_desc = _describe(like, where="load (like)")
    wanted = {name: spec.get("prng") for name, spec in _leaf_specs(like_desc).items()}
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
        want_dtype = f"key<{want_prng}>" if want_prng else str(np.asarray(leaf).dtype.newbyteorder("="))
        if got_dtype != want_dtype:
            problems.append(f"{name}: dtype {got_dtype} in the file, {want_dtype} in `like`")
    if problems:
        raise ValueError(f"load: {path} does not match `like`:\n  - " + "\n  - ".join(problems))
    try:
        return jax.tree_util.tree_unflatten(
            treedef, [_leaf(arrays[_name(p)], stored[_name(p)]) for p, _ in leaves_with_path])
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"load: {path} holds a tree that cannot be rebuilt "
                              f"({type(err).__name__}: {err})") from None
