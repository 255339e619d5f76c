"""Unembed: the output projection onto a vocabulary, ``logits = x @ table.T``.

Shapes: ``x (..., features)``, params ``{"table": (num_embeddings, features)}``
(the layout of ``Embedding``'s table, so the two can be tied with
:func:`fnnet.tie`), ``y (..., num_embeddings)``.

Forward and backward (sums over every leading axis)::

    y      = x @ table^T
    dtable = dy^T @ x          # (num, features)
    dx     = dy @ table        # (..., features)

Residuals: ``(x, table)``. PyTorch: ``nn.Linear(features, num, bias=False)`` with
``weight = table`` (the weight-tying idiom ``lm_head.weight = wte.weight``).
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import _checks
from ..core import Layer, named
from ..initializers import normal
from ..sqnorm import ghost_sqnorm
from ..structure import recorded


@recorded
def Unembed(num_embeddings: int, *, table_init=None, dtype=jnp.float32) -> Layer:
    """Project features onto ``num_embeddings`` logits with params ``{"table": (num, features)}``.

    ``table_init`` defaults to ``normal(0.02)`` (GPT-2's embedding init).
    """
    if not isinstance(num_embeddings, int) or isinstance(num_embeddings, bool) \
            or num_embeddings <= 0:
        raise ValueError(f"Unembed: num_embeddings must be a positive int, got {num_embeddings!r}")
    name = f"Unembed({num_embeddings})"
    table_init = table_init or normal(0.02)

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{name}: input_shape must end in the feature axis (..., d), "
                             f"got {tuple(input_shape)}")
        return {"table": table_init(key, (num_embeddings, input_shape[-1]), dtype)}

    def fwd(params, x, *, key=None):
        table = params["table"]
        _checks.floating(name, x)
        _checks.batched(name, x, layout="(batch, ..., features)")
        _checks.last_axis(name, x, table.shape[1], f"its table of shape {table.shape}")
        return x @ table.T, (x, table)

    def bwd(res, dy):
        x, table = res
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return {"table": (dy2.T @ x2).astype(table.dtype)}, (dy @ table).astype(x.dtype)

    def per_example(res, dy):  # fnnet.per_example: dtable_i = dy_i^T x_i
        x, table = res
        x3, dy3 = _examples(x), _examples(dy)
        return {"table": jnp.einsum("nto,nti->noi", dy3, x3).astype(table.dtype)}

    def sqnorm(res, dy):  # ghost norm over the time steps
        return ghost_sqnorm(_examples(res[0]), _examples(dy))

    return named(name, init, fwd, bwd, per_example=per_example, sqnorm=sqnorm)


def _examples(a):
    """``(n, T, features)``: the leading axes past the batch as T."""
    return a.reshape(a.shape[0], -1, a.shape[-1])
