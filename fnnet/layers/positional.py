"""PositionalEmbedding: a learned vector per position, added to a sequence.

Shapes: ``x (batch, T, d)``, params ``{"table": (max_len, d)}``, ``y`` like ``x``::

    y[b, t] = x[b, t] + table[t]             t = 0 .. T-1,  T <= max_len

Backward (``dy`` the cotangent of ``y``)::

    dx          = dy
    dtable[:T]  = sum_b dy[b]                rows T.. max_len-1 get 0 (unused)

Residuals: none but the shapes (``T`` and ``max_len``, static). A sequence
longer than the table is an error, never a silent wrap or clamp.

PyTorch: GPT-2's ``wpe``: ``x + nn.Embedding(max_len, d)(torch.arange(T))``
with ``weight = table``. Default init ``N(0, 0.02^2)`` (GPT-2's).
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import _checks
from ..core import Layer, Static, named
from ..initializers import normal
from ..structure import recorded


@recorded
def PositionalEmbedding(max_len: int, *, init=normal(0.02), dtype=jnp.float32) -> Layer:
    """Learned positional embedding with params ``{"table": (max_len, d)}``; adds
    ``table[:T]`` to a ``(batch, T, d)`` input."""
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise ValueError(f"PositionalEmbedding: max_len must be a positive int, got {max_len!r}")
    name = f"PositionalEmbedding({max_len})"
    table_init = init

    def init_fn(key, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{name}: input_shape must be (T, d), got {tuple(input_shape)}")
        return {"table": table_init(key, (max_len, input_shape[-1]), dtype)}

    def fwd(params, x, *, key=None):
        table = params["table"]
        _checks.floating(name, x)
        _checks.rank(name, x, 3, "(batch, time, features)",
                     "A single sequence needs a batch axis: x[None].")
        _checks.last_axis(name, x, table.shape[1], f"its table of shape {table.shape}")
        t = x.shape[1]
        if x.shape[0] == 0 or t == 0:
            raise ValueError(f"{name}: empty input of shape {x.shape}; needs at least one "
                             f"sequence of at least one step")
        if t > table.shape[0]:
            raise ValueError(f"{name}: the sequence has {t} steps (input shape {x.shape}) but "
                             f"the table holds {table.shape[0]} positions; use sequences of at "
                             f"most {table.shape[0]} steps or build the model with "
                             f"max_len >= {t}")
        return x + table[:t], Static((t, table.shape[0], table.dtype, x.dtype))

    def bwd(res, dy):
        t, max_len, table_dtype, x_dtype = res.value
        rows = jnp.sum(dy, axis=0).astype(table_dtype)
        return {"table": jnp.pad(rows, [(0, max_len - t), (0, 0)])}, dy.astype(x_dtype)

    def per_example(res, dy):  # fnnet.per_example: example i's rows are dy_i itself
        t, max_len, table_dtype, _ = res.value
        return {"table": jnp.pad(dy, [(0, 0), (0, max_len - t), (0, 0)]).astype(table_dtype)}

    def sqnorm(res, dy):
        return jnp.sum(jnp.square(dy), axis=(1, 2))

    return named(name, init_fn, fwd, bwd, per_example=per_example, sqnorm=sqnorm)
