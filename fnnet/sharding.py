"""Data parallelism over a ``jax.sharding.Mesh``.

``train_step(..., mesh=mesh)`` and ``fit(..., mesh=mesh)`` place the batch
split along its first axis over ALL the mesh's devices
(``NamedSharding(mesh, P(mesh.axis_names))``) and the params and optimizer
state replicated on every device (``NamedSharding(mesh, P())``). The step is
the same ``jax.jit`` program: XLA partitions it from those input shardings
(computation follows data) and inserts the all-reduce of the gradients, so
the result equals single-device training up to float rounding of the sums.

Layer state (BatchNorm's running statistics) is replicated like the params.
Batch statistics are GLOBAL: the mean and variance of a sharded batch are
reductions over the whole batch axis, which XLA computes across devices, so
the running statistics equal single-device training (tested on 4 CPU devices).
With minibatches (``fit(batch_size=...)``) the batch size must split evenly
over the devices, the data set need not: a data set that does not is
replicated and each minibatch is sharded as it is drawn.

The same code runs on one host with several GPUs (``mesh = Mesh(jax.devices(),
("data",))``) and on several hosts after ``jax.distributed.initialize()``
(``jax.devices()`` then lists every host's devices; each process passes its
slice of the batch as a global array, e.g. with
``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["data_sharding", "replicated", "shard_batch", "replicate", "check_mesh"]


def check_mesh(mesh, where: str):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: mesh must be a jax.sharding.Mesh, e.g. "
                        f"Mesh(jax.devices(), ('data',)), got {type(mesh).__name__}")


def data_sharding(mesh: Mesh) -> NamedSharding:
    """First (batch) axis split over every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(n: int, mesh: Mesh, where: str, what: str = "batch"):
    if n % mesh.size:
        raise ValueError(f"{where}: the {what} of {n} examples does not split evenly over the "
                         f"{mesh.size} devices of the mesh; use a multiple of {mesh.size}")


def shard_batch(mesh: Mesh, tree, where: str = "shard_batch"):
    """``device_put`` every array of ``tree`` split along its first axis over ``mesh``."""
    for leaf in jax.tree.leaves(tree):
        check_divisible(leaf.shape[0], mesh, where)
    return jax.device_put(tree, data_sharding(mesh))


def replicate(mesh: Mesh, tree):
    """``device_put`` every array of ``tree`` replicated over ``mesh``."""
    return jax.device_put(tree, replicated(mesh))
