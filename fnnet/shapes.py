"""Shape inference: what a layer outputs for one example of a given input shape.

``input_shape`` is one example's shape (no batch axis): a tuple of ints, or, for a
layer whose input is a tuple of arrays (``parallel``, ``FanInSum``,
``FanInConcat``), a tuple of such shapes (nested as deep as the data).
``()`` is the shape of one scalar per example (e.g. one id).

Inference runs abstractly (``jax.eval_shape``: nothing is computed) on a batch of
:data:`BATCH` examples, in training mode (a fixed key), so that layers with state
need none and layers with batch statistics see more than one example. The input
dtype is the first layer's ``input_dtype``: float32 unless it says otherwise
(``Embedding`` takes int32 ids).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["is_shape", "check_shape_tree", "abstract_batch", "output_aval", "output_shape",
           "shape_tree"]

BATCH = 2


def is_shape(s) -> bool:
    """True for one array's shape (a tuple/list of non-negative ints, ``()`` included)."""
    return isinstance(s, (tuple, list)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)


def check_shape_tree(where: str, input_shape):
    """Raise a clear ``TypeError`` unless ``input_shape`` is a shape or a tuple of shapes."""
    def ok(s):
        return is_shape(s) or (isinstance(s, (tuple, list)) and len(s) > 0 and all(map(ok, s)))

    if not ok(input_shape):
        hint = (f" (a single int? write ({input_shape},) for {input_shape} features)"
                if isinstance(input_shape, int) else "")
        raise TypeError(f"{where}: input_shape must be one example's shape, a tuple of ints such "
                        f"as (2,) or (28, 28, 1), or a tuple of such shapes for a tuple input; "
                        f"got {input_shape!r}{hint}")


def _tree(shape):
    """A shape tree as nested tuples whose leaves are shape tuples."""
    return tuple(shape) if is_shape(shape) else tuple(_tree(s) for s in shape)


def abstract_batch(input_shape, dtype=None):
    """``ShapeDtypeStruct``s for a batch of :data:`BATCH` examples of ``input_shape``.

    ``dtype`` is one dtype for every array, or a tree matching ``input_shape``.
    """
    shape = _tree(input_shape)
    if is_shape(shape):
        return jax.ShapeDtypeStruct((BATCH, *shape), dtype or jnp.float32)
    dtypes = dtype if isinstance(dtype, (tuple, list)) else (dtype,) * len(shape)
    return tuple(abstract_batch(s, d) for s, d in zip(shape, dtypes))


def output_aval(layer, params, aval):
    """Abstract output of ``layer`` (training mode) for the abstract batch ``aval``."""
    return jax.eval_shape(lambda p, x: layer.fwd(p, x, key=jax.random.key(0))[0], params, aval)


def shape_tree(aval):
    """One example's shape(s) of an abstract batch (the batch axis dropped)."""
    if isinstance(aval, (tuple, list)):
        return tuple(shape_tree(a) for a in aval)
    return tuple(aval.shape[1:])


def output_shape(layer, params, input_shape, dtype=None):
    """Shape of ``layer``'s output for ONE example of ``input_shape`` (no batch axis).

    A tuple of ints, or a tuple of shapes for a layer with a tuple output.
    ``dtype`` defaults to the layer's ``input_dtype``.
    """
    aval = abstract_batch(input_shape, dtype or layer.input_dtype)
    return shape_tree(output_aval(layer, params, aval))
