"""Combinators: layers made of layers (stax's set, each with its own backward).

``serial(*layers)`` composes layers left to right. Its params are a tuple with
one entry per layer; its residuals a tuple of the layers' residuals; its backward
walks the layers in reverse, feeding each layer's ``dx`` to the layer before it
(the chain rule as a composition of VJPs)::

    y_0 = x,   y_i, r_i = fwd_i(p_i, y_{i-1})          i = 1..L
    g_L = dy,  (dp_i, g_{i-1}) = bwd_i(r_i, g_i)        i = L..1
    return (dp_1, ..., dp_L), g_0

Graphs beyond a chain pass TUPLES of arrays between layers:

==================  ==================  ========================  ================================
combinator          input -> output     params                    backward
==================  ==================  ========================  ================================
parallel(*layers)   (x_1..x_n) ->       (p_1, ..., p_n)           each branch's own bwd:
                    (y_1..y_n)                                    (dp_i, dx_i) = bwd_i(r_i, dy_i)
FanOut(n)           x -> (x, ..., x)    ()                        dx = dy_1 + ... + dy_n
FanInSum            (x_1..x_n) -> sum   ()                        dx_i = dy  (for every i)
FanInConcat(axis)   (x_1..x_n) ->       ()                        dx_i = dy's slice i along axis
                    concat(axis)
residual(f)         x -> x + f(x)       f's params                dx = dy + dx_f
==================  ==================  ========================  ================================

An Inception block is ``serial(FanOut(3), parallel(a, b, c), FanInConcat())``; a
skip connection around any sub-network is ``serial(FanOut(2), parallel(f,
Identity), FanInSum)``. ``FanInSum`` requires identical shapes (no silent
broadcasting). ``FanInConcat(axis)`` counts axes of the batched arrays like
``jnp.concatenate`` (``-1``, the default, is the feature axis; the batch axis 0 is
refused). A key passed to ``fwd`` is split into one key per child
(``jax.random.split``), so the manual and autodiff paths see the same randomness.
A combinator containing a stateful layer (BatchNorm) is stateful: its state is a
tuple with one entry per child (see :mod:`fnnet.state`).

Cotangents of integer inputs (Embedding ids) are ``None``; ``FanOut``'s sum and
the combinators pass ``None`` through.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _checks
from .core import Graph, Layer, Static, combinator, layer_keys, meta, named, no_params
from .shapes import (abstract_batch, check_shape_tree, is_shape, output_aval, output_shape,
                     shape_tree)
from .structure import recorded
from .walk import leaves

__all__ = ["serial", "parallel", "FanOut", "FanInSum", "FanInConcat", "residual",
           "output_shape", "flat_layers", "layer_keys"]


def _raise_with_position(err: Exception, i: int, layer: Layer, outer: str):
    """Re-raise ``err`` with ``[layer i (name) of outer]`` added to its message.

    fnnet's own errors (plain ``ValueError``/``TypeError``) are rebuilt with the
    longer message. Subclasses (e.g. JAX's ``TracerBoolConversionError``, whose
    constructor takes a tracer, not a message) are re-raised unchanged, with the
    position as a note (Python >= 3.11), instead of being replaced by an error
    from their constructor.
    """
    where = f"[layer {i} ({layer.name}) of {outer}]"
    if type(err) in (ValueError, TypeError):
        raise type(err)(f"{err.args[0] if err.args else err} {where}") from err
    if hasattr(err, "add_note"):
        err.add_note(where)
    raise err


def check_serial_params(where: str, params, n: int):
    """Raise ``ValueError`` unless ``params`` is a tuple/list with one entry per layer."""
    if not isinstance(params, (tuple, list)) or len(params) != n:
        got = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
        raise ValueError(f"{where}: params must be a tuple of {n} entries (one per layer), "
                         f"got {got}; pass the params from model.init")


def _check_layers(where: str, layers):
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (a constructor? call it, e.g. fn.Dense(3))" if callable(layer) else ""
            raise TypeError(f"{where}: argument {i} is {layer!r}, not a fnnet Layer{hint}")


def _states(n, state):
    """Each child's state (``None`` when the caller gave none)."""
    return [None] * n if state is None else list(state)


def _input_dtype(layers, how):
    dtypes = [meta(l).input_dtype for l in layers]
    if how == "first":
        return dtypes[0]
    return tuple(d or jnp.float32 for d in dtypes) if any(d is not None for d in dtypes) else None


@recorded
def serial(*layers: Layer) -> Layer:
    """Compose ``layers`` left to right into one :class:`~fnnet.Layer`.

    Params: ``tuple(params_1, ..., params_L)``. ``init(key, input_shape)`` infers
    each layer's input shape (and dtype: integer ids for an ``Embedding`` first).
    Errors raised by a layer are re-raised with its position, e.g.
    ``"... [layer 2 (Dense(1)) of serial]"``.
    """
    if not layers:
        raise ValueError("serial: needs at least one layer")
    _check_layers("serial", layers)
    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"
    short, n = "serial", len(layers)

    def init(key, input_shape):
        check_shape_tree(short, input_shape)
        keys = jax.random.split(key, n)
        params, aval = [], abstract_batch(input_shape, layers[0].input_dtype)
        for i, (layer, k) in enumerate(zip(layers, keys)):
            try:
                p = layer.init(k, shape_tree(aval))
                aval = output_aval(layer, p, aval)
            except (ValueError, TypeError) as err:
                _raise_with_position(err, i, layer, short)
            params.append(p)
        return tuple(params)

    def forward(params, x, key, state, run):
        check_serial_params(short, params, n)
        residuals = []
        for i, (p, k, s) in enumerate(zip(params, layer_keys(key, n), _states(n, state))):
            try:
                x, r = run(i, p, x, k, s)
            except (ValueError, TypeError) as err:
                _raise_with_position(err, i, layers[i], short)
            residuals.append(r)
        return x, tuple(residuals)

    def backward(residuals, dy, back):
        dparams = [None] * n
        for i in reversed(range(n)):
            dparams[i], dy = back(i, residuals[i], dy)
        return tuple(dparams), dy

    return combinator(name, init, Graph("serial", layers, forward, backward, output=n - 1),
                      input_dtype=_input_dtype(layers, "first"))


@recorded
def parallel(*layers: Layer) -> Layer:
    """Apply ``layers[i]`` to the ``i``-th entry of a tuple input; the output is a tuple.

    Params ``(p_1, ..., p_n)``; ``init(key, (shape_1, ..., shape_n))``.
    """
    if not layers:
        raise ValueError("parallel: needs at least one layer")
    _check_layers("parallel", layers)
    name = "parallel(" + ", ".join(layer.name for layer in layers) + ")"
    n = len(layers)

    def check_input(x, what="inputs"):
        if not isinstance(x, (tuple, list)) or len(x) != n:
            got = f"a tuple of {len(x)}" if isinstance(x, (tuple, list)) else \
                f"a single array of shape {jnp.shape(x)}"
            raise ValueError(f"{name}: expected a tuple of {n} {what} (one per branch), got "
                             f"{got}; put FanOut({n}) before it to copy one input to every branch")

    def init(key, input_shape):
        check_shape_tree("parallel", input_shape)
        if is_shape(input_shape):
            raise ValueError(f"{name}: expected a tuple of {n} input shapes (one per branch), "
                             f"got the single shape {tuple(input_shape)}; put FanOut({n}) before "
                             f"it to copy one input to every branch")
        check_input(input_shape, "input shapes")
        keys = jax.random.split(key, n)
        return tuple(layer.init(k, s) for layer, k, s in zip(layers, keys, input_shape))

    def forward(params, x, key, state, run):
        check_serial_params(name, params, n)
        check_input(x)
        out = [run(i, p, xi, k, s) for i, (p, xi, k, s) in
               enumerate(zip(params, x, layer_keys(key, n), _states(n, state)))]
        return tuple(y for y, _ in out), tuple(r for _, r in out)

    def backward(residuals, dy, back):
        grads = [back(i, r, g) for i, (r, g) in enumerate(zip(residuals, dy))]
        return tuple(dp for dp, _ in grads), tuple(dx for _, dx in grads)

    reads = lambda x: list(enumerate(x)) if isinstance(x, (tuple, list)) and len(x) == n else []
    return combinator(name, init, Graph("parallel", layers, forward, backward, reads=reads),
                      input_dtype=_input_dtype(layers, "each"))


def _add(a, b):
    if a is None or b is None:
        return None if a is None and b is None else (a if b is None else b)
    return jax.tree.map(jnp.add, a, b)


@recorded
def FanOut(num: int) -> Layer:
    """Copy one input ``num`` times: ``x -> (x, ..., x)``. Backward: the sum of the copies'
    cotangents (a value used in ``num`` places receives the sum of its gradients)."""
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"FanOut: num must be a positive int, got {num!r}")
    name = f"FanOut({num})"

    def fwd(params, x, *, key=None):
        return (x,) * num, None

    def bwd(res, dy):
        if not isinstance(dy, (tuple, list)) or len(dy) != num:
            raise ValueError(f"{name}: the cotangent must be a tuple of {num}, got {type(dy)}")
        total = dy[0]
        for g in dy[1:]:
            total = _add(total, g)
        return (), total

    return named(name, no_params, fwd, bwd)


def _tuple_input(name: str, x, min_len: int = 1):
    if not isinstance(x, (tuple, list)) or len(x) < min_len:
        got = f"a tuple of {len(x)}" if isinstance(x, (tuple, list)) else \
            f"a single array of shape {jnp.shape(x)}"
        raise ValueError(f"{name}: expected a tuple of arrays (e.g. from parallel or FanOut), "
                         f"got {got}")
    for xi in x:
        _checks.floating(name, xi)


def _fan_in_sum_fwd(params, x, *, key=None):
    _tuple_input("FanInSum", x)
    shapes = [jnp.shape(xi) for xi in x]
    if len(set(shapes)) != 1:
        raise ValueError(f"FanInSum: inputs have shapes {shapes}; they must match exactly "
                         f"(fnnet never broadcasts silently). Project the branches to one shape.")
    dtypes = [jnp.result_type(xi) for xi in x]
    if len(set(dtypes)) != 1:
        raise TypeError(f"FanInSum: inputs have dtypes {[str(d) for d in dtypes]}; they must "
                        f"match. Cast the branches to one dtype.")
    total = x[0]
    for xi in x[1:]:
        total = total + xi
    return total, Static(len(x))


def _fan_in_sum_bwd(res, dy):
    return (), (dy,) * res.value


FanInSum = named("FanInSum", no_params, _fan_in_sum_fwd, _fan_in_sum_bwd)


@recorded
def FanInConcat(axis: int = -1) -> Layer:
    """Concatenate a tuple of arrays along ``axis`` of the batched arrays (``-1``: features).
    Backward: ``dy`` split back into the pieces' sizes along ``axis``."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ValueError(f"FanInConcat: axis must be an int, got {axis!r}")
    name = f"FanInConcat(axis={axis})"

    def fwd(params, x, *, key=None):
        _tuple_input(name, x)
        ndim = jnp.ndim(x[0])
        ax = axis % ndim if -ndim <= axis < ndim else None
        if ax is None or ax == 0:
            raise ValueError(f"{name}: axis {axis} is {'the batch axis' if ax == 0 else 'out of range'} "
                             f"for inputs of rank {ndim}; concatenate along a feature axis "
                             f"(1..{ndim - 1}, or -1)")
        shapes = [jnp.shape(xi) for xi in x]
        if any(len(s) != ndim or s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:]
               for s in shapes):
            raise ValueError(f"{name}: inputs have shapes {shapes}; all axes but {axis} must "
                             f"match exactly")
        sizes = tuple(s[ax] for s in shapes)
        dtypes = tuple(str(jnp.result_type(xi)) for xi in x)
        return jnp.concatenate(x, axis=ax), Static((ax, sizes, dtypes))

    def bwd(res, dy):
        ax, sizes, dtypes = res.value
        cuts = [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)]
        return (), tuple(g.astype(d) for g, d in zip(jnp.split(dy, cuts, axis=ax), dtypes))

    return named(name, no_params, fwd, bwd)


@recorded
def residual(layer: Layer) -> Layer:
    """The skip connection ``x + layer(x)`` as a :class:`~fnnet.Layer`.

    Params are ``layer``'s params (same tree). ``layer`` must keep the shape of
    its input (e.g. a same-width ``Dense``, or ``Conv2D`` with ``padding="SAME"``
    and as many features as input channels).
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"residual: argument is {layer!r}, not a fnnet Layer")
    name = f"residual({layer.name})"

    def check(x_shape, y_shape):
        if tuple(x_shape) != tuple(y_shape):
            raise ValueError(f"{name}: the inner layer maps shape {tuple(x_shape)} to "
                             f"{tuple(y_shape)}; x + layer(x) needs it to keep the shape "
                             f"(match its features/channels to the input's).")

    def init(key, input_shape):
        params = layer.init(key, input_shape)
        check(input_shape, output_shape(layer, params, input_shape))
        return params

    def forward(params, x, key, state, run):
        y, res = run(0, params, x, key, state)
        check(jnp.shape(x), jnp.shape(y))
        return x + y, res

    def backward(res, dy, back):
        dparams, dx = back(0, res, dy)
        return dparams, (dx + dy).astype(dx.dtype)

    graph = Graph("residual", (layer,), forward, backward, params=lambda p: (p,),
                  residuals=lambda r: (r,), wrapper=True)
    return combinator(name, init, graph, input_dtype=meta(layer).input_dtype)


def flat_layers(model: Layer, params, key=None, path=()):
    """The layers of ``model``'s ``serial`` chains in forward order: ``[(path, layer,
    params, key)]``, nested ``serial``s expanded, keys split as ``serial`` splits;
    any other layer (a graph combinator included) is an entry of its own.

    The chain view of a model; the tools themselves see through every combinator
    (:func:`fnnet.walk.leaves`, of which this is the serial-only case).
    """
    return leaves(model, params, key, path=path,
                  open=lambda layer: meta(layer).graph.kind == "serial")
