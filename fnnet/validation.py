"""Argument checks of the entry points that take data: ``train_step``, ``fit``, ``sweep``,
``evaluate`` and ``predict`` (the one place for them; layers and losses check their own
inputs in :mod:`fnnet._checks`).

Every check raises before anything is traced or compiled, with a message that names
the function (``where``), what was expected, what came, and what to do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .grad import require_key
from .optim.base import check_optimizer

__all__ = ["as_int", "check_data", "is_tuple_input", "num_examples", "take_examples",
           "shape_of", "check_state_arg", "check_optimizer_object",
           "check_opt_state", "validate_fit_args", "check_inference_state", "stateful"]


def stateful(model) -> bool:
    """Whether ``model`` carries layer state (BatchNorm's running statistics)."""
    return bool(getattr(model, "has_state", False))


def as_int(value):
    """``value`` as a Python int if it is an integer (NumPy integers and integer 0-d arrays
    included), else as is (the argument checks then name what is wrong)."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == () and \
            jnp.issubdtype(value.dtype, jnp.integer):
        return int(value)
    return value


def is_tuple_input(x) -> bool:
    """Whether ``x`` is a graph model's tuple input: a tuple of arrays (``(x, mask)``)."""
    return isinstance(x, tuple) and len(x) > 0 and all(
        hasattr(a, "shape") and hasattr(a, "dtype") for a in x)


def num_examples(x) -> int:
    """The batch size of ``x``, an array or a tuple of arrays (their common first axis)."""
    return (x[0] if is_tuple_input(x) else x).shape[0]


def take_examples(x, i):
    """``x[i]`` of an array or of every array of a tuple input."""
    return tuple(a[i] for a in x) if is_tuple_input(x) else x[i]


def shape_of(x):
    """``x.shape``, or the tuple of the shapes of a tuple input (for messages)."""
    return tuple(tuple(a.shape) for a in x) if is_tuple_input(x) else tuple(x.shape)


def check_data(x, y, where: str, what: str = "x"):
    """Raise clear errors for data that is not arrays, or empty, or mismatched.

    ``x`` may be a tuple of arrays with a common first axis: the tuple input of a
    graph model (``parallel``), e.g. ``(ids, mask)``; ``fit`` batches every entry."""
    prefix = "" if what == "x" else "validation "
    entries = [(prefix + "y", y)]
    if is_tuple_input(x):
        entries = [(f"{prefix}x[{i}]", a) for i, a in enumerate(x)] + entries
    else:
        entries = [(prefix + "x", x)] + entries
    for name, v in entries:
        if isinstance(v, (list, tuple)):
            raise TypeError(f"{where}: {name} is a Python {type(v).__name__}; pass an array, "
                            f"e.g. jnp.asarray({name.split()[-1]}, jnp.float32) (fnnet does not guess "
                            f"dtypes from Python lists)")
        if not hasattr(v, "shape") or not hasattr(v, "dtype"):
            raise TypeError(f"{where}: {name} must be an array, got {type(v).__name__}")
        if len(v.shape) == 0:
            raise ValueError(f"{where}: {name} must have a batch axis (examples first), got a "
                             f"scalar")
    n = num_examples(x)
    if is_tuple_input(x) and any(a.shape[0] != n for a in x):
        raise ValueError(f"{where}: the entries of the tuple {prefix}x have different numbers "
                         f"of examples (shapes {shape_of(x)}); their first axes must match")
    if y.shape[:1] != (n,):
        raise ValueError(f"{where}: {prefix}x has {n} examples (shape {shape_of(x)}) but "
                         f"{prefix}y has shape {tuple(y.shape)}; their first axes must match")
    if n == 0:
        raise ValueError(f"{where}: the {prefix}batch is empty (0 examples, x of "
                         f"shape {shape_of(x)}); pass at least one example")


def check_state_arg(model, state, where: str):
    """A stateful model needs ``state=`` in training (else its statistics would be lost)."""
    if stateful(model) and state is None:
        raise ValueError(f"{where}: {model.name} has layer state (BatchNorm running "
                         f"statistics); pass state=fn.init_state(model, params) and keep the "
                         f"returned state")


def check_inference_state(model, state, where: str):
    """A stateful model needs ``state=`` in inference (its running statistics)."""
    if stateful(model) and state is None:
        raise ValueError(f"{where}: {model.name} has layer state (BatchNorm running statistics) "
                         f"used in inference; pass state= (the state returned by fit or "
                         f"train_step, or fn.init_state)")


def check_optimizer_object(optimizer, where: str):
    """An optimizer must be built (``fn.optim.sgd(0.1)``), not its constructor."""
    check_optimizer(optimizer, where=where)


def check_opt_state(optimizer, params, opt_state, where: str):
    """``opt_state`` must be what ``optimizer.init(params)`` builds (tree, shapes, dtypes)."""
    want = jax.eval_shape(optimizer.init, params)
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), opt_state)
    ws, gs = jax.tree.structure(want), jax.tree.structure(got)
    if ws != gs:
        raise ValueError(f"{where}: opt_state does not belong to this optimizer and these params "
                         f"(its tree differs from optimizer.init(params)); pass the state "
                         f"returned with these params, or opt_state=None to start afresh")
    for path, w, g in zip(jax.tree_util.tree_flatten_with_path(want)[0],
                          jax.tree.leaves(want), jax.tree.leaves(got)):
        if w.shape != g.shape:
            raise ValueError(f"{where}: opt_state{jax.tree_util.keystr(path[0])} has shape "
                             f"{g.shape}, but optimizer.init(params) gives {w.shape}: the state "
                             f"was built for another model; pass the state returned with these "
                             f"params, or opt_state=None")


def validate_fit_args(model, x, y, *, epochs, batch_size, key, where="fit"):
    """Raise clear errors for bad ``fit``/``sweep`` arguments: epochs, data, batch size, key."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"{where}: epochs must be a positive int, got {epochs!r}")
    check_data(x, y, where)
    n = num_examples(x)
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or \
                not 1 <= batch_size <= n:
            raise ValueError(f"{where}: batch_size must be an int in [1, {n}] (the number of "
                             f"examples) or None for full batch, got {batch_size!r}")
        if key is None:
            raise ValueError(f"{where}: minibatches are reshuffled every epoch from the key; "
                             f"pass key=jax.random.key(0)")
    require_key(model, key, where)
