"""Tensor parallelism (Megatron-LM's column/row split), expressed as shardings of the params.

On a 2-d mesh ``("data", "model")`` the batch is split over ``"data"`` and, over
``"model"``, the weights of each pair of layers that multiply one after the
other::

    Dense pair (an MLP block: Dense(h) -> activation -> Dense(d')):
        w1 (d, h)   P(None, "model")   column split: each device computes h/M units
        b1 (h,)     P("model")
        w2 (h, d')  P("model", None)   row split: each device's h/M units in, partial sums out
        b2 (d',)    P()                (XLA all-reduces the partial sums, then adds b2)
    MultiHeadAttention {"w_qkv", "b_qkv", "w_o", "b_o"}:
        w_qkv (d, 3d) P(None, "model"),  b_qkv P("model"),  w_o (d, d) P("model", None),  b_o P()
    attention with separate projections {"w_q", "w_k", "w_v", "w_o"} (+ biases):
        w_q, w_k, w_v column split (their biases too), w_o row split
    SwiGLU {"w_gate", "w_up", "w_down"} (+ biases): w_gate, w_up column, w_down row

Between the two halves the activations stay split over ``"model"`` (the
elementwise activation needs no communication); XLA inserts the all-reduce after
the row-split matmul in the forward, and the mirror-image one for ``dx`` in the
backward. The hand-written backward is unchanged: XLA partitions it like the
forward from the same shardings.

How pairs are found: from the params tree alone (no layer metadata). In a tuple
(a ``serial``'s params), a Dense-like entry (``{"w": (a, b), "b": (b,)}``) is
paired with the next Dense-like entry when only parameter-free layers (``()``)
stand between them and their shapes chain (``b`` in, ``b`` out); an unpaired
Dense stays replicated over ``"model"``. The optimizer state's moment trees
mirror the params, so the same walk gives them the same splits. The rule is a
placement, never a change of numbers: a pair it misreads (two branches of
``parallel`` whose shapes chain) still computes the same result, with more
communication.

Heads: the column split of the packed ``w_qkv (d, 3d)`` cuts its ``3d`` axis into
``M`` contiguous blocks, which are not whole heads of q, k and v (the layout is
fixed by the contract), so XLA moves activations between devices where q, k and
v are separated; parameter memory is still ``1/M``. Separate ``w_q``/``w_k``/``w_v``
split head-aligned when ``M`` divides the number of (key/value) heads.

Leaves that no rule matches (embeddings, norms) are replicated over ``"model"``;
with ``fsdp=True`` every large leaf is also split over ``"data"`` along an axis
not already split (:class:`~fnnet.sharding.FSDP`'s choice), so a ``data x model``
mesh holds about ``1/(data*model)`` of the params per device.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import PartitionSpec as P
from jax.tree_util import DictKey, GetAttrKey, SequenceKey, keystr

from .partitioning import FSDP, Policy, check_axis, check_spec

__all__ = ["TensorParallel"]

# Layers recognised by their param keys: (the keys that identify them, each key's role)
NAMED = (
    (("w_qkv", "w_o"),                     # MultiHeadAttention
     {"w_qkv": "col", "b_qkv": "col_b", "w_o": "row", "b_o": "rep"}),
    (("w_q", "w_k", "w_v", "w_o"),         # attention with separate projections (GQA)
     {"w_q": "col", "w_k": "col", "w_v": "col", "w_o": "row",
      "b_q": "col_b", "b_k": "col_b", "b_v": "col_b", "b_o": "rep"}),
    (("w_gate", "w_up", "w_down"),         # SwiGLU's gated MLP
     {"w_gate": "col", "w_up": "col", "w_down": "row",
      "b_gate": "col_b", "b_up": "col_b", "b_down": "rep"}),
)


def _dense_like(node) -> bool:
    if not (isinstance(node, dict) and "w" in node and set(node) <= {"w", "b"}):
        return False
    w = node["w"]
    if w is None or np.ndim(w) != 2:
        return False
    return "b" not in node or node["b"] is None or np.shape(node["b"]) == (np.shape(w)[1],)


def _param_free(node) -> bool:
    return node is None or (isinstance(node, (tuple, list, dict)) and not jax.tree.leaves(node))


def _children(node):
    if isinstance(node, dict):
        return [(DictKey(k), v) for k, v in sorted(node.items(), key=lambda kv: str(kv[0]))]
    if isinstance(node, tuple) and hasattr(type(node), "_fields"):
        return [(GetAttrKey(f), getattr(node, f)) for f in type(node)._fields]
    if isinstance(node, (tuple, list)):
        return [(SequenceKey(i), v) for i, v in enumerate(node)]
    return []


def _roles(tree):
    """``{path (keystr): role}`` for every leaf a Megatron rule places; role is
    ``"col"`` (split the last axis), ``"col_b"`` (a column bias), ``"row"`` (split
    the first axis) or ``"rep"`` (a row bias: replicated)."""
    roles = {}

    def dense(path, node, kind):
        roles[keystr(path + (DictKey("w"),))] = kind
        if node.get("b") is not None:
            roles[keystr(path + (DictKey("b"),))] = "col_b" if kind == "col" else "rep"

    def walk(path, node):
        for keys, table in NAMED:
            if isinstance(node, dict) and set(keys) <= set(node):
                for k, v in node.items():
                    if k in table and v is not None:
                        roles[keystr(path + (DictKey(k),))] = table[k]
                return
        pending = None
        chain = isinstance(node, (tuple, list)) and not hasattr(type(node), "_fields")
        for entry, child in _children(node):
            if chain and _dense_like(child):
                w = np.shape(child["w"])
                if pending is not None and np.shape(pending[1]["w"])[1] == w[0]:
                    dense(pending[0], pending[1], "col")
                    dense(path + (entry,), child, "row")
                    pending = None
                else:
                    pending = (path + (entry,), child)
            elif chain and _param_free(child):
                continue
            else:
                pending = None
                walk(path + (entry,), child)

    walk((), tree)
    return roles


@dataclass(frozen=True)
class TensorParallel(Policy):
    """Megatron's tensor parallelism over ``model_axis``, data parallelism over
    ``data_axis`` (None: the batch is not split). ``fsdp=True`` also splits every large
    leaf over ``data_axis`` (params and optimizer state ``1/(data*model)`` per device).
    See :mod:`fnnet.tensor_parallel` for which leaves are split and how."""

    model_axis: str = "model"
    data_axis: str | None = "data"
    fsdp: bool = False
    min_size: int = 1024

    name = "tensor"

    def batch_axes(self, mesh):
        if self.data_axis is None:
            return ()
        check_axis(mesh, self.data_axis, "TensorParallel", "data_axis")
        return (self.data_axis,)

    def specs(self, mesh, tree, root="params"):
        m = self.model_axis
        check_axis(mesh, m, "TensorParallel", "model_axis")
        self.batch_axes(mesh)
        if self.fsdp and self.data_axis is None:
            raise ValueError("TensorParallel: fsdp=True splits leaves over data_axis; pass "
                             "data_axis= the mesh's data axis")
        roles = _roles(tree)
        extra = FSDP(axis=self.data_axis, min_size=self.min_size) if self.fsdp else None

        def spec(path, leaf):
            name, shape = root + keystr(path), tuple(np.shape(leaf))
            role = roles.get(keystr(path), "rep")
            dims = {"col": [None] * (len(shape) - 1) + [m], "col_b": [m],
                    "row": [m] + [None] * (len(shape) - 1)}.get(role, [])
            dims += [None] * (len(shape) - len(dims))
            if extra is not None:
                taken = [d for d, a in enumerate(dims) if a is not None]
                d = extra.split(mesh, shape, taken, self.data_axis)
                if d is not None:
                    dims[d] = self.data_axis
            while dims and dims[-1] is None:
                dims.pop()
            return check_spec(mesh, name, shape, P(*dims), "TensorParallel")

        return jax.tree_util.tree_map_with_path(spec, tree)
