"""Checkpoints of sharded arrays: every process writes its own shards, one description.

``fn.sharding.save(path, tree)`` is called by EVERY process with the same global
tree (params and optimizer state placed by ``train_step``/``fit`` on a mesh, or
any tree of arrays). ``path`` is a directory::

    path/description.npz                    the tree, every leaf's global shape and
                                            dtype, and where each of its shards is
    path/shards.<token>.<p>-of-<n>.npz      process p's shards (of n processes)

Each distinct shard of a leaf is written once, by the process of the first
device (lowest id) that holds it; replicated leaves are written once in all.
Every file is an ordinary fnnet checkpoint (:mod:`fnnet.checkpoint`): atomic
(written to a temporary file, read back and verified, then renamed) and
verified on load (the SHA-256 of every array, the CRC of every zip member). The
description is written last, by process 0, after a barrier: until it is
replaced, ``path`` holds the previous checkpoint whole (its shard files carry
another ``token`` and are removed only after the new description is in place).

``fn.sharding.load(path, like=None, shardings=None)`` assembles each leaf from
the stored shards into ``shardings`` (a tree of ``jax.sharding.Sharding`` like the
tree, one ``Sharding`` for every leaf, or None: ``like``'s own shardings when its
leaves have them, else the default device). Each process reads only the files
holding shards its devices need, and bytes are copied, never recomputed: loading
onto another mesh, another policy or one device gives the same arrays bit for
bit. A checkpoint written by more processes than are loading it is an error
(each writer's file holds shards only that writer had; load it with at least as
many processes, e.g. with :mod:`fnnet.distributed`'s launcher on one machine).
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets

import jax
import numpy as np
from jax.sharding import Sharding, SingleDeviceSharding
from jax.tree_util import DictKey

from . import checkpoint as ckpt

__all__ = ["save", "load"]

FORMAT = "fnnet-sharded-1"
DESCRIPTION = "description.npz"
_SHARD_RE = re.compile(r"^shards\.([0-9a-f]+)\.(\d+)-of-(\d+)\.npz$")


def _shard_file(token: str, p: int, n: int) -> str:
    return f"shards.{token}.{p}-of-{n}.npz"


def _token() -> str:
    """A random generation token, the same in every process (process 0's)."""
    mine = np.frombuffer(secrets.token_bytes(8), np.uint8)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        mine = np.asarray(multihost_utils.broadcast_one_to_all(mine))
    return bytes(mine.astype(np.uint8)).hex()


def _barrier(name: str):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _index(idx, shape):
    """A shard's index (a tuple of slices) as ``[[start, stop], ...]`` per axis."""
    out = []
    for s, n in zip(tuple(idx) + (slice(None),) * (len(shape) - len(idx)), shape):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"strided shard {idx}")
        out.append([start, stop])
    return out


def _plan(leaf):
    """``[(process, device or None, index)]``: the distinct shards of a leaf and who writes
    each (the process of the lowest-id device holding it)."""
    if not isinstance(leaf, jax.Array):
        return [(0, None, _index((), np.shape(leaf)))]
    owners = {}
    for device, idx in sorted(leaf.sharding.devices_indices_map(leaf.shape).items(),
                              key=lambda kv: kv[0].id):
        key = json.dumps(_index(idx, leaf.shape))
        owners.setdefault(key, device)
    return [(d.process_index, d, json.loads(k)) for k, d in owners.items()]


def _stand_in(leaf):
    """A tiny leaf with ``leaf``'s kind, so that checkpoint's ``_describe`` names the tree."""
    if ckpt._is_prng_key(leaf):
        return jax.random.key(0, impl=jax.random.key_impl(leaf))
    return np.empty((0,), _dtype(leaf))


def _dtype(leaf) -> str:
    """The dtype JAX gives ``leaf`` (a Python int is int32 without x64)."""
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return str(jax.dtypes.canonicalize_dtype(dtype))


def _leaves(tree):
    """``[(name, leaf as an array of numbers)]``: typed PRNG keys as their key data."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out.append((ckpt._name(path), jax.random.key_data(leaf) if ckpt._is_prng_key(leaf)
                    else leaf))
    return out


def save(path, tree) -> None:
    """Write ``tree`` (every process calls this with the same global tree) to the
    directory ``path``: this process's shards, then (process 0) the description."""
    path = os.fspath(path)
    pid, n = jax.process_index(), jax.process_count()
    structure = ckpt._describe(jax.tree.map(_stand_in, tree), where="fn.sharding.save")
    token = _token()
    os.makedirs(path, exist_ok=True)
    leaves, mine = {}, {}
    for name, leaf in _leaves(tree):
        plan = _plan(leaf)
        leaves[name] = {"shape": list(np.shape(leaf)), "dtype": _dtype(leaf),
                        "shards": [[p, idx] for p, _, idx in plan]}
        for p, device, idx in plan:
            if p != pid:
                continue
            if device is None:
                data = np.asarray(leaf).astype(_dtype(leaf), copy=False)
            else:
                data = next(np.asarray(s.data) for s in leaf.addressable_shards
                            if s.device == device)
            mine.setdefault(name, {})[json.dumps(idx)] = data
    ckpt.save(os.path.join(path, _shard_file(token, pid, n)), mine)
    _barrier("fnnet.sharding.save: shards written")
    if pid == 0:
        desc = {"format": FORMAT, "process_count": n, "token": token, "tree": structure,
                "leaves": leaves}
        ckpt.save(os.path.join(path, DESCRIPTION),
                  {"description": np.frombuffer(json.dumps(desc).encode("utf-8"), np.uint8)})
    _barrier("fnnet.sharding.save: description written")
    for old in glob.glob(os.path.join(path, "shards.*.npz")):   # the previous generations
        m = _SHARD_RE.match(os.path.basename(old))
        if m and m.group(1) != token and (pid == 0 or int(m.group(2)) == pid):
            try:
                os.remove(old)
            except FileNotFoundError:
                pass


def _description(path):
    file = os.path.join(path, DESCRIPTION)
    if not os.path.isdir(path):
        kind = "a file" if os.path.exists(path) else "not found"
        err = ckpt.CheckpointNotFoundError if kind == "not found" else ckpt.CheckpointError
        raise err(f"fn.sharding.load: {path} is {kind}; a sharded checkpoint is the directory "
                  f"fn.sharding.save wrote (fn.load reads single-file checkpoints)")
    if not os.path.exists(file):
        raise ckpt.CheckpointError(f"fn.sharding.load: {path} has no {DESCRIPTION} (not a "
                                   f"sharded checkpoint, or its first save did not finish)")
    raw = ckpt.load(file)["description"]
    try:
        desc = json.loads(bytes(np.asarray(raw, np.uint8)).decode("utf-8"))
    except ValueError as err:
        raise ckpt.CheckpointError(f"fn.sharding.load: {file} holds no description "
                                   f"({err})") from None
    if desc.get("format") != FORMAT:
        raise ckpt.CheckpointError(f"fn.sharding.load: {path} has format "
                                   f"{desc.get('format')!r}, expected {FORMAT!r}")
    return desc


class _Shards:
    """The stored shards, read file by file as they are needed (each file verified whole)."""

    def __init__(self, path, desc):
        self.path, self.desc, self.files = path, desc, {}

    def shard(self, process: int, name: str, idx):
        if process not in self.files:
            file = os.path.join(self.path, _shard_file(self.desc["token"], process,
                                                       self.desc["process_count"]))
            self.files[process] = ckpt._read_all(file)[0]     # NumPy arrays, verified
        try:
            data = self.files[process][ckpt._name((DictKey(name), DictKey(json.dumps(idx))))]
        except KeyError:
            raise ckpt.CheckpointError(f"fn.sharding.load: {self.path}: process {process}'s "
                                       f"file lacks the shard {idx} of {name}") from None
        want = tuple(b - a for a, b in idx)
        if data.shape != want:
            raise ckpt.CheckpointError(f"fn.sharding.load: {self.path}: shard {idx} of {name} "
                                       f"has shape {data.shape}, expected {want}")
        return data

    def assemble(self, name: str, spec, region):
        """The slice ``region`` (``[[start, stop], ...]``) of leaf ``name``, from its shards."""
        dtype = ckpt._real_dtype(spec["dtype"])
        out = np.empty([b - a for a, b in region], dtype)
        if out.size == 0:
            return out
        filled = 0
        for p, idx in spec["shards"]:
            lo = [max(a, r0) for (a, _), (r0, _) in zip(idx, region)]
            hi = [min(b, r1) for (_, b), (_, r1) in zip(idx, region)]
            if any(a >= b for a, b in zip(lo, hi)):
                continue
            data = self.shard(p, name, idx)
            if data.dtype != dtype:
                raise ckpt.CheckpointError(f"fn.sharding.load: {self.path}: {name} has dtype "
                                           f"{data.dtype}, expected {dtype}")
            src = tuple(slice(a - i0, b - i0) for a, b, (i0, _) in zip(lo, hi, idx))
            dst = tuple(slice(a - r0, b - r0) for a, b, (r0, _) in zip(lo, hi, region))
            out[dst] = data[src]
            filled += int(np.prod([b - a for a, b in zip(lo, hi)]))
        if filled != out.size:
            raise ckpt.CheckpointError(f"fn.sharding.load: {self.path}: the shards of {name} "
                                       f"cover {filled} of the {out.size} elements asked for")
        return out


def _check_like(path, desc, like):
    """Every difference between the stored tree and ``like`` (names, shapes, dtypes)."""
    stored = desc["leaves"]
    problems = []
    wanted = dict(_leaves(like))
    for name in wanted.keys() - stored.keys():
        problems.append(f"missing in the checkpoint: {name}")
    for name in stored.keys() - wanted.keys():
        problems.append(f"in the checkpoint but not in `like`: {name}")
    for name in wanted.keys() & stored.keys():
        leaf, spec = wanted[name], stored[name]
        if list(np.shape(leaf)) != spec["shape"] or _dtype(leaf) != spec["dtype"]:
            problems.append(f"{name}: {spec['dtype']}{tuple(spec['shape'])} in the checkpoint, "
                            f"{_dtype(leaf)}{tuple(np.shape(leaf))} in `like`")
    if problems:
        raise ValueError(f"fn.sharding.load: {path} does not match `like`:\n  - "
                         + "\n  - ".join(sorted(problems)))


def load(path, like=None, shardings=None):
    """Read a checkpoint written by :func:`save`, each leaf placed by ``shardings``.

    ``like`` (optional): a tree with the stored structure (NamedTuples come back as
    such; shapes and dtypes are checked). ``shardings``: a tree of
    ``jax.sharding.Sharding`` with the tree's structure, one ``Sharding`` for every
    leaf, or None (``like``'s leaves' own shardings where they have them, else one
    device). Raises :class:`~fnnet.checkpoint.CheckpointError` for a missing,
    incomplete or corrupted checkpoint, and for one written by more processes than
    are loading it.
    """
    path = os.fspath(path)
    desc = _description(path)
    if desc["process_count"] > jax.process_count():
        raise ckpt.CheckpointError(
            f"fn.sharding.load: {path} was written by {desc['process_count']} processes and "
            f"is being loaded by {jax.process_count()}; each writer's file holds the shards "
            f"only it had, so load it with at least {desc['process_count']} processes (on one "
            f"machine: python -m fnnet.launch -n {desc['process_count']} script.py)")
    stored = ckpt._leaf_specs(desc["tree"])          # name -> {"t": "leaf", "prng"?}
    if like is not None:
        _check_like(path, desc, like)
        names = [ckpt._name(p) for p, _ in jax.tree_util.tree_flatten_with_path(like)[0]]
        placed = [getattr(leaf, "sharding", None) for leaf in jax.tree.leaves(like)]
    else:
        names, placed = list(stored), [None] * len(stored)
    if isinstance(shardings, Sharding):
        targets = [shardings] * len(names)
    elif shardings is not None:
        targets = jax.tree.leaves(shardings, is_leaf=lambda s: isinstance(s, Sharding))
        if len(targets) != len(names):
            raise ValueError(f"fn.sharding.load: shardings has {len(targets)} leaves, the "
                             f"checkpoint {len(names)}; pass one Sharding per leaf (e.g. "
                             f"fn.sharding.shardings(mesh, like, policy)) or one for all")
    else:
        default = SingleDeviceSharding(jax.local_devices()[0])
        targets = [t if isinstance(t, Sharding) else default for t in placed]
    shards = _Shards(path, desc)
    arrays = {}
    for name, target in zip(names, targets):   # a key's data: the key's sharding, one more axis
        spec = desc["leaves"][name]
        shape = tuple(spec["shape"])
        arrays[name] = jax.make_array_from_callback(
            shape, target, lambda idx, name=name, spec=spec, shape=shape:
            shards.assemble(name, spec, _index(idx, shape)))
    if like is None:
        return ckpt._build(desc["tree"], arrays)
    return jax.tree.unflatten(jax.tree.structure(like), [
        ckpt._leaf(arrays[n], stored[n].get("prng")) for n in names])
