"""Embedding: a lookup table, ``y = table[ids]``.

Shapes: integer ``ids (...)`` of any shape (``(batch,)``, ``(batch, T)``, ...),
``table (num_embeddings, features)``, ``y (..., features)``.

Forward and backward (a gather, and its transpose, a scatter-add)::

    y[..., :] = table[ids[...], :]
    dtable    = zeros.at[ids].add(dy)      # every position adds its row; repeated ids SUM
    dx        = None                       # ids are integers: no input gradient

Residuals: ``ids`` (and the table's shape and dtype, static).

**Out-of-range ids are loud, never clamped.** Valid ids are ``0 <= id <
num_embeddings``. When the ids are concrete (eager code, or data checked before
``jit``), an invalid id raises ``ValueError`` naming the layer and the offending
range. Under ``jit`` the ids are not known at trace time, so an invalid id makes
its output row all NaN (a gather in ``"fill"`` mode; a negative id is invalid,
not Python-style wrap-around); the NaN then shows in the loss, and
``fn.find_nonfinite`` points to the Embedding. Its backward drops the rows of
invalid ids (nothing is scattered out of bounds).

PyTorch: ``nn.Embedding(num, features)`` with ``weight = table``; the default init
is PyTorch's, ``N(0, 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Layer, Static, named
from ..initializers import normal
from ..structure import recorded


def _check_ids(name: str, ids, num: int):
    dtype = jnp.result_type(ids)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name}: expected integer ids, got dtype {dtype}. Embedding looks rows "
                        f"up by index; convert with ids.astype(jnp.int32) (values must be "
                        f"whole numbers in [0, {num})).")
    if jnp.size(ids) == 0:
        raise ValueError(f"{name}: got an empty batch of ids (shape "
                         f"{tuple(jnp.shape(ids))}); need at least one id.")
    if isinstance(ids, jax.core.Tracer):
        return  # under jit: invalid ids give NaN rows (see the module docstring)
    a = np.asarray(ids)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= num:
        bad = a[(a < 0) | (a >= num)]
        raise ValueError(f"{name}: ids must be in [0, {num}), got ids in [{lo}, {hi}] "
                         f"({bad.size} out of range, e.g. {int(bad.flat[0])}). Check the "
                         f"vocabulary size (num_embeddings) or the data.")


@recorded
def Embedding(num_embeddings: int, features: int, *, table_init=normal(1.0),
              dtype=jnp.float32) -> Layer:
    """A lookup table with params ``{"table": (num_embeddings, features)}``.

    Input: integer ids of any shape ``(...)``; output ``(..., features)``.
    Out-of-range ids raise ``ValueError`` when concrete, and give NaN rows under
    ``jit`` (never clamped). ``table_init`` defaults to ``N(0, 1)`` as in PyTorch.
    """
    for what, v in (("num_embeddings", num_embeddings), ("features", features)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"Embedding: {what} must be a positive int, got {v!r}")
    name = f"Embedding({num_embeddings}, {features})"

    def init(key, input_shape):
        return {"table": table_init(key, (num_embeddings, features), dtype)}

    def fwd(params, ids, *, key=None):
        table = params["table"]
        _check_ids(name, ids, table.shape[0])
        ids = jnp.asarray(ids)
        # a negative id is out of range too (not "count from the end")
        safe = jnp.where(ids < 0, table.shape[0], ids)
        y = table.at[safe].get(mode="fill", fill_value=jnp.nan)
        return y, (safe, Static((table.shape, table.dtype)))

    def bwd(res, dy):
        safe, meta = res
        shape, dtype = meta.value
        dy2 = dy.reshape(-1, shape[1])
        dtable = jnp.zeros(shape, dy.dtype).at[safe.reshape(-1)].add(dy2, mode="drop")
        return {"table": dtable.astype(dtype)}, None

    def per_example(res, dy):  # fnnet.per_example: example i's own scatter-add
        safe, meta = res
        shape, dtype = meta.value
        ids, dy3 = safe.reshape(safe.shape[0], -1), dy.reshape(dy.shape[0], -1, shape[1])
        one = lambda i, d: jnp.zeros(shape, d.dtype).at[i].add(d, mode="drop")
        return {"table": jax.vmap(one)(ids, dy3).astype(dtype)}

    def sqnorm(res, dy):
        # ghost norm: rows t, s of example i land on the same table row iff their ids match,
        # ||dtable_i||^2 = sum_{t,s} [id_t == id_s] (dy_t . dy_s)   (out-of-range ids dropped)
        safe, meta = res
        shape, _ = meta.value
        ids, dy3 = safe.reshape(safe.shape[0], -1), dy.reshape(dy.shape[0], -1, shape[1])
        if ids.shape[1] ** 2 > shape[0] * shape[1]:  # cheaper to form the tables
            g = per_example(res, dy)["table"].astype(dy.dtype)
            return jnp.sum(jnp.square(g), axis=(1, 2))
        valid = ids < shape[0]
        same = (ids[:, :, None] == ids[:, None, :]) & valid[:, :, None] & valid[:, None, :]
        return jnp.sum(jnp.where(same, jnp.einsum("ntd,nsd->nts", dy3, dy3), 0), axis=(1, 2))

    # check_input: fit/evaluate run it on the concrete data before compiling (data_checks)
    return named(name, init, fwd, bwd, input_dtype=jnp.int32, per_example=per_example,
                 sqnorm=sqnorm, check_input=lambda ids: _check_ids(name, ids, num_embeddings))
