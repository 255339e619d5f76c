"""Where params, optimizer state and the batch live on a ``jax.sharding.Mesh``.

``train_step(..., mesh=mesh)`` and ``fit(..., mesh=mesh)`` run the same
``jax.jit`` program on every device of the mesh. fnnet only chooses the
*shardings* of the inputs (a ``NamedSharding`` per array); XLA partitions the
program from them (computation follows data) and inserts every collective: the
gradient all-reduce, the all-gather of a sharded weight before a layer uses it,
the reduce-scatter of its gradient. fnnet writes no communication of its own and
the hand-written backward is the same code on one device or many, so results
equal single-device training up to the float rounding of the sums.

**Policies** (``sharding=`` on ``train_step``/``fit``, default ``"replicated"``):

=================  ==================================================================
``"replicated"``   data parallel: the batch split over every device, params and
                   optimizer state a full copy on every device (:class:`Replicated`)
``"fsdp"``         fully sharded data parallel (ZeRO-3): the batch split over every
                   device, each large leaf of the params and of the optimizer state
                   split along one axis over every device; XLA gathers a weight
                   where a layer needs it (:class:`FSDP`)
``"tensor"``       Megatron tensor parallel on a 2-d mesh ``("data", "model")``: the
                   batch split over ``"data"``, Dense pairs / attention heads / the MLP
                   block split column-then-row over ``"model"``
                   (:class:`~fnnet.tensor_parallel.TensorParallel`)
a policy object    :class:`FSDP`, :class:`TensorParallel` or :class:`Rules` (regular
                   expressions on param paths -> ``PartitionSpec``) with settings
=================  ==================================================================

A policy maps a pytree (the params, and the optimizer state, whose moment trees
mirror the params) to one ``PartitionSpec`` per leaf (:func:`specs`), and names
the mesh axes the batch is split over. A leaf's spec must split it evenly:
asking for a split that does not (a :class:`Rules` entry, a tensor-parallel
weight) is an error naming the leaf and the sizes that would work; :class:`FSDP`
chooses a dividing axis itself and replicates a leaf that has none
(:func:`describe` shows what it chose). Layer state (BatchNorm's running
statistics) is always replicated, and BatchNorm's batch statistics are those of
the GLOBAL batch (XLA reduces across devices).

The batch size must split evenly over the data-parallel devices; with
minibatches (``fit(batch_size=...)``) the data set need not: a data set that
does not is replicated and each minibatch is sharded as it is drawn.

**Several processes.** The same code runs on several hosts after
``jax.distributed.initialize()`` (see :mod:`fnnet.distributed`): the mesh then
spans every process's devices, each process passes its own slice of the batch
as one global array (:func:`global_batch`), and checkpoints of sharded arrays
are written by every process at once (:func:`save`, :func:`load`, in
:mod:`fnnet.sharded_checkpoint`).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.tree_util import keystr

from .partitioning import FSDP, P, Policy, Replicated, Rules, axes_size, check_mesh
from .sharded_checkpoint import load, save
from .tensor_parallel import TensorParallel

__all__ = ["Replicated", "FSDP", "TensorParallel", "Rules", "POLICIES", "resolve", "specs",
           "shardings", "place", "describe", "device_bytes", "data_sharding", "batch_sharding",
           "replicated", "shard_batch", "replicate", "global_batch", "check_mesh", "save",
           "load"]

POLICIES = ("replicated", "fsdp", "tensor")


def resolve(sharding, where: str) -> Policy:
    """A policy from ``sharding=``: None, one of :data:`POLICIES`, or a policy object."""
    if sharding is None or sharding == "replicated":
        return Replicated()
    if sharding == "fsdp":
        return FSDP()
    if sharding == "tensor":
        return TensorParallel()
    if isinstance(sharding, Policy):
        return sharding
    raise ValueError(f"{where}: sharding must be one of {POLICIES} or a policy object "
                     f"(fn.sharding.FSDP(...), fn.sharding.TensorParallel(...), "
                     f"fn.sharding.Rules(...)), got {sharding!r}")


def specs(mesh, tree, sharding="fsdp", root: str = "params"):
    """One ``PartitionSpec`` per leaf of ``tree`` under the policy ``sharding``."""
    return resolve(sharding, "specs").specs(mesh, tree, root)


def shardings(mesh, tree, sharding="fsdp", root: str = "params"):
    """One ``NamedSharding`` per leaf of ``tree`` under the policy ``sharding``
    (e.g. the ``shardings=`` of :func:`load`)."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs(mesh, tree, sharding, root),
                        is_leaf=lambda s: isinstance(s, PartitionSpec))


# --- the batch -------------------------------------------------------------------------

def batch_sharding(mesh, policy: Policy | None = None) -> NamedSharding:
    """The batch's first axis split over the policy's batch axes (default: every device)."""
    axes = tuple(mesh.axis_names) if policy is None else policy.batch_axes(mesh)
    return NamedSharding(mesh, P(axes) if axes else P())


def data_sharding(mesh: Mesh) -> NamedSharding:
    """First (batch) axis split over every device of ``mesh``."""
    return batch_sharding(mesh)


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_groups(mesh, policy: Policy | None = None) -> int:
    """How many slices the batch is split into."""
    return axes_size(mesh, tuple((policy or Replicated()).batch_axes(mesh)))


def check_divisible(n: int, mesh: Mesh, where: str, what: str = "batch", policy=None):
    groups = batch_groups(mesh, policy)
    if n % groups:
        over = (f"{groups} devices of the mesh" if groups == mesh.size else
                f"{groups} data-parallel groups of the mesh (axes "
                f"{(policy or Replicated()).batch_axes(mesh)})")
        raise ValueError(f"{where}: the {what} of {n} examples does not split evenly over the "
                         f"{over}; use a multiple of {groups}")


def shard_batch(mesh: Mesh, tree, where: str = "shard_batch", policy: Policy | None = None):
    """``device_put`` every array of ``tree`` split along its first axis over ``mesh``."""
    for leaf in jax.tree.leaves(tree):
        check_divisible(leaf.shape[0], mesh, where, policy=policy)
    return jax.device_put(tree, batch_sharding(mesh, policy))


def global_batch(mesh: Mesh, local, sharding=None):
    """Each process's slice of the batch (``local``, a tree of arrays) as ONE global
    array per leaf, split over the policy's batch axes; on one process, the batch.
    The global batch is the processes' slices in process order."""
    target = batch_sharding(mesh, resolve(sharding, "global_batch"))
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(target, np.asarray(a)),
                        local)


def _canonical(leaf):
    """Host data in the dtype JAX will give it (a Python float becomes float32 without
    x64): several processes check that they put the same value, and compare in it."""
    if isinstance(leaf, jax.Array):
        return leaf
    a = np.asarray(leaf)
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)


def replicate(mesh: Mesh, tree):
    """``device_put`` every array of ``tree`` replicated over ``mesh``."""
    return jax.device_put(jax.tree.map(_canonical, tree), replicated(mesh))


# --- placing params and optimizer state ------------------------------------------------

class Layout(NamedTuple):
    """The shardings of ``(params, opt_state)``, hashable: static data of a compiled step,
    which constrains the new params, optimizer state and gradients to them."""

    params: tuple          # (treedef, tuple of NamedSharding)
    opt_state: tuple

    @staticmethod
    def pack(tree):
        leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda s: isinstance(s, NamedSharding))
        return treedef, tuple(leaves)

    def constrain(self, which: str, tree):
        treedef, leaves = getattr(self, which)
        return jax.lax.with_sharding_constraint(tree, jax.tree.unflatten(treedef, leaves))


def check_policy(mesh, sharding, where: str) -> Policy | None:
    """The policy of ``sharding=`` (None without a mesh), its mesh axes checked."""
    if mesh is None:
        if sharding is not None and sharding != "replicated":
            raise ValueError(f"{where}: sharding={sharding!r} needs mesh= (a "
                             f"jax.sharding.Mesh of the devices to shard over)")
        return None
    check_mesh(mesh, where)
    policy = resolve(sharding, where)
    policy.batch_axes(mesh)
    policy.specs(mesh, {})          # its mesh axes exist
    return policy


def place(mesh: Mesh, policy: Policy, params, opt_state, init=None):
    """``(params, opt_state, layout)`` on ``mesh`` under ``policy``; ``layout`` is None
    for the replicated policy (the compiled step then needs no constraints). An
    ``opt_state`` of None stays None, or with ``init`` (``optimizer.init``) is built
    directly in its shardings."""
    if isinstance(policy, Replicated):
        params, opt_state = replicate(mesh, (params, opt_state))
        return params, opt_state, None
    params, opt_state = jax.tree.map(_canonical, (params, opt_state))
    ps = _shardings_of(mesh, policy, params, "params")
    params = jax.device_put(params, ps)
    if opt_state is None and init is not None:
        os_ = _shardings_of(mesh, policy, jax.eval_shape(init, params), "opt_state")
        opt_state = jax.jit(init, out_shardings=os_)(params)
    else:
        os_ = _shardings_of(mesh, policy, opt_state, "opt_state")
        opt_state = jax.device_put(opt_state, os_)
    return params, opt_state, Layout(Layout.pack(ps), Layout.pack(os_))


def _shardings_of(mesh, policy, tree, root):
    """:func:`shardings`, cached on the tree's structure, shapes and dtypes (a train step
    places its arguments on every call)."""
    leaves, treedef = jax.tree.flatten(tree)
    avals = tuple((tuple(np.shape(a)), a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype)
                  for a in leaves)
    return _cached_shardings(mesh, policy, root, treedef, avals)


@functools.lru_cache(maxsize=64)
def _cached_shardings(mesh, policy, root, treedef, avals):
    stand_in = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in avals])
    return shardings(mesh, stand_in, policy, root)


# --- looking at it -----------------------------------------------------------------------

def device_bytes(tree, device=None) -> int:
    """Bytes of ``tree``'s arrays held by ``device`` (default: the most any device holds)."""
    per = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            per[shard.device] = per.get(shard.device, 0) + shard.data.nbytes
    if device is not None:
        return per.get(device, 0)
    return max(per.values(), default=0)


def describe(mesh, tree, sharding="fsdp", root: str = "params") -> str:
    """A text table: every leaf's shape, its ``PartitionSpec`` under the policy, and
    the bytes one device holds; the totals against a replicated copy."""
    spec_tree = specs(mesh, tree, sharding, root)
    rows, total, per_device = [], 0, 0
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    for (path, leaf), spec in zip(flat, jax.tree.leaves(
            spec_tree, is_leaf=lambda s: isinstance(s, PartitionSpec))):
        shape, size = tuple(np.shape(leaf)), np.dtype(leaf.dtype).itemsize * math.prod(np.shape(leaf))
        split = math.prod(axes_size(mesh, a) for a in spec)
        rows.append((root + keystr(path), str(shape), str(spec), f"{size // split:,}"))
        total, per_device = total + size, per_device + size // split
    rows.append(("total", "", f"1/{total / max(per_device, 1):.2f} of a copy", f"{per_device:,}"))
    heads = ("leaf", "shape", "spec", "bytes/device")
    widths = [max(len(r[i]) for r in rows + [heads]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(heads)] + [line(r) for r in rows])


