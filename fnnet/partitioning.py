"""How a policy partitions a tree over a mesh: the policy types (:class:`Policy`,
:class:`Replicated`, :class:`FSDP`, :class:`Rules`) and the checks of meshes and
specs they share with :mod:`fnnet.tensor_parallel`. :mod:`fnnet.sharding` (which
re-exports them) describes the policies; this module sits below both, so that
neither imports the other's pieces back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jax.tree_util import keystr

__all__ = ["Policy", "Replicated", "FSDP", "Rules", "check_mesh", "check_axis", "check_spec",
           "uneven_error"]

P = PartitionSpec


def check_mesh(mesh, where: str):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: mesh must be a jax.sharding.Mesh, e.g. "
                        f"Mesh(jax.devices(), ('data',)), got {type(mesh).__name__}")


def check_axis(mesh, axis, where: str, setting: str):
    """``axis`` (a name) must be one of the mesh's axes."""
    if axis not in mesh.axis_names:
        raise ValueError(f"{where}: the mesh has no axis {axis!r} (its axes are "
                         f"{tuple(mesh.axis_names)}); pass {setting}= one of them, or build the "
                         f"mesh with that axis, e.g. Mesh(devices.reshape(2, -1), ('data', "
                         f"'model'))")


def axes_size(mesh, axes) -> int:
    """Devices along ``axes``: a name, a tuple of names, or None (not split)."""
    if axes is None:
        return 1
    names = axes if isinstance(axes, tuple) else (axes,)
    return math.prod(dict(mesh.shape)[a] for a in names)


def _divisors(n: int, limit: int = 12) -> str:
    ds = [d for d in range(2, n + 1) if n % d == 0][:limit]
    return ", ".join(map(str, ds)) + (", ..." if len(ds) == limit else "") if ds else "none"


def uneven_error(where: str, name: str, shape, dim: int, axes, size: int) -> ValueError:
    """The error for a leaf whose axis ``dim`` does not split over ``size`` devices."""
    n = shape[dim]
    up = -(-n // size) * size
    return ValueError(
        f"{where}: {name} of shape {tuple(shape)} cannot be split evenly: its axis {dim} "
        f"({n}) over mesh axis {axes!r} ({size} devices). Sizes of {axes!r} that would work: "
        f"{_divisors(n)}; or make that axis of the leaf a multiple of {size} (e.g. {up})")


def check_spec(mesh, name: str, shape, spec: PartitionSpec, where: str) -> PartitionSpec:
    """``spec`` must name existing mesh axes and split ``shape`` evenly (errors say how not)."""
    if len(spec) > len(shape):
        raise ValueError(f"{where}: {name} of shape {tuple(shape)} has {len(shape)} axes, but "
                         f"its PartitionSpec {spec} names {len(spec)}")
    for dim, axes in enumerate(spec):
        for a in (axes if isinstance(axes, tuple) else (axes,)):
            if a is not None:
                check_axis(mesh, a, where, "the PartitionSpec's axis")
        size = axes_size(mesh, axes)
        if shape[dim] % size:
            raise uneven_error(where, name, shape, dim, axes, size)
    return spec


def _map_leaves(f, tree, root: str):
    """``f(name, shape)`` on every array leaf (``name`` = ``root`` + the leaf's path)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: f(root + keystr(path), tuple(np.shape(leaf))), tree)


# --- policies --------------------------------------------------------------------------

class Policy:
    """Where a tree's leaves and the batch go on a mesh (subclasses say how).

    ``specs(mesh, tree, root)`` -> one ``PartitionSpec`` per leaf of ``tree``;
    ``batch_axes(mesh)`` -> the mesh axes the batch's first axis is split over.
    ``mesh`` needs only ``axis_names`` and ``shape`` (a ``jax.sharding.AbstractMesh``
    will do for looking at specs without devices).
    """

    name = "policy"

    def batch_axes(self, mesh) -> tuple:
        return tuple(mesh.axis_names)

    def specs(self, mesh, tree, root: str = "params"):
        raise NotImplementedError


@dataclass(frozen=True)
class Replicated(Policy):
    """Data parallel (the default): the batch over every device, every leaf replicated."""

    name = "replicated"

    def specs(self, mesh, tree, root="params"):
        return jax.tree.map(lambda _: P(), tree)


@dataclass(frozen=True)
class FSDP(Policy):
    """Fully sharded data parallel: every leaf of at least ``min_size`` elements split
    along ONE axis over the devices of ``axis`` (default: every mesh axis, i.e. every
    device), the batch split over every device.

    The axis chosen is the leaf's largest axis that the device count divides (the
    first such on ties); a leaf with none stays replicated (:func:`describe` lists
    it). Leaves smaller than ``min_size`` (biases, norm scales, step counts) stay
    replicated: gathering them would cost more than they save. XLA all-gathers a
    weight where a layer uses it and reduce-scatters its gradient.
    """

    axis: Any = None                 # a mesh axis name, a tuple of names, or None (all)
    min_size: int = 1024

    name = "fsdp"

    def __post_init__(self):
        if not isinstance(self.min_size, int) or isinstance(self.min_size, bool) or \
                self.min_size < 1:
            raise ValueError(f"FSDP: min_size must be a positive int (elements), got "
                             f"{self.min_size!r}")

    def axes(self, mesh):
        axes = tuple(mesh.axis_names) if self.axis is None else self.axis
        for a in (axes if isinstance(axes, tuple) else (axes,)):
            check_axis(mesh, a, "FSDP", "axis")
        return axes[0] if isinstance(axes, tuple) and len(axes) == 1 else axes

    def split(self, mesh, shape, taken=(), axes=None):
        """The dimension of ``shape`` to split over ``axes`` (None: keep replicated)."""
        axes = self.axes(mesh) if axes is None else axes
        n = axes_size(mesh, axes)
        if n == 1 or math.prod(shape) < self.min_size:
            return None
        dims = [d for d in range(len(shape)) if d not in taken and shape[d] % n == 0]
        return max(dims, key=lambda d: (shape[d], -d)) if dims else None

    def specs(self, mesh, tree, root="params"):
        axes = self.axes(mesh)

        def spec(name, shape):
            dim = self.split(mesh, shape, axes=axes)
            if dim is None:
                return P()
            return P(*[axes if d == dim else None for d in range(dim + 1)])

        return _map_leaves(spec, tree, root)


@dataclass(frozen=True)
class Rules(Policy):
    """Your own placement: ``rules`` is a sequence of ``(pattern, PartitionSpec)``; a
    leaf takes the spec of the first pattern that ``re.search``-matches its path
    (``jax.tree_util.keystr``, e.g. ``"[2][0][1]['w_qkv']"``); an unmatched leaf is
    replicated. The batch is split over ``batch`` (mesh axis names; default every
    axis). A spec that does not split its leaf evenly is an error.
    """

    rules: tuple = ()
    batch: Any = None

    name = "rules"

    def __post_init__(self):
        rules = tuple(tuple(r) for r in self.rules)
        for r in rules:
            if len(r) != 2 or not isinstance(r[0], str) or not isinstance(r[1], PartitionSpec):
                raise TypeError(f"Rules: each rule is (pattern: str, PartitionSpec), got {r!r}")
        object.__setattr__(self, "rules", rules)

    def batch_axes(self, mesh):
        if self.batch is None:
            return tuple(mesh.axis_names)
        axes = (self.batch,) if isinstance(self.batch, str) else tuple(self.batch)
        for a in axes:
            check_axis(mesh, a, "Rules", "batch")
        return axes

    def specs(self, mesh, tree, root="params"):
        compiled = [(re.compile(p), s) for p, s in self.rules]

        def spec(name, shape):
            path = name[len(root):]
            for pattern, s in compiled:
                if pattern.search(path):
                    return check_spec(mesh, name, shape, s, "Rules")
            return P()

        return _map_leaves(spec, tree, root)
