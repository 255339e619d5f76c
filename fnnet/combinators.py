"""Combinators: layers made of layers.

``serial(*layers)`` composes layers left to right. Its params are a tuple with
one entry per layer; its residuals a tuple of the layers' residuals; its backward
walks the layers in reverse, feeding each layer's ``dx`` to the layer before it
(the chain rule as a composition of VJPs)::

    y_0 = x,   y_i, r_i = fwd_i(p_i, y_{i-1})          i = 1..L
    g_L = dy,  (dp_i, g_{i-1}) = bwd_i(r_i, g_i)        i = L..1
    return (dp_1, ..., dp_L), g_0

A key passed to ``fwd`` is split into one key per layer (``jax.random.split``),
so the manual and autodiff paths see the same randomness.

``residual(layer)`` is the skip connection ``y = x + f(x)``. Its params are
``f``'s params; its VJP is the sum of the two paths::

    y = x + f(p, x)          (dp, dx_f) = bwd_f(r, dy),     dx = dy + dx_f
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .core import Layer, named


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


def output_shape(layer: Layer, params, input_shape, dtype=jnp.float32):
    """Shape of ``layer``'s output for ONE example of ``input_shape`` (no batch axis)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    y = jax.eval_shape(lambda p, x: layer.fwd(p, x)[0], params, x)
    return tuple(y.shape[1:])


def layer_keys(key, n: int) -> list:
    """One key per layer, split exactly as ``serial`` splits (``None``s for inference)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def check_serial_params(where: str, params, n: int):
    """Raise ``ValueError`` unless ``params`` is a tuple/list with one entry per layer."""
    if not isinstance(params, (tuple, list)) or len(params) != n:
        got = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
        raise ValueError(f"{where}: params must be a tuple of {n} entries (one per layer), "
                         f"got {got}; pass the params from model.init")


def flat_layers(model: Layer, params, key=None, path=()):
    """The leaf layers of ``model`` in forward order: ``[(path, layer, params, key)]``.

    ``serial`` models (recognised by ``model.fwd.fnnet_layers``) are expanded
    recursively, splitting ``key`` exactly as ``serial`` does, so walking the list
    reproduces ``model.fwd`` and (in reverse) ``model.bwd``. Any other layer is a
    leaf of its own. Used by the diagnostics and the NaN finder.
    """
    layers = getattr(model.fwd, "fnnet_layers", None)
    if layers is None:
        return [(path, model, params, key)]
    check_serial_params(model.name, params, len(layers))
    out = []
    for i, (layer, p, k) in enumerate(zip(layers, params, layer_keys(key, len(layers)))):
        out.extend(flat_layers(layer, p, k, path + (i,)))
    return out


def serial(*layers: Layer) -> Layer:
    """Compose ``layers`` left to right into one :class:`~fnnet.Layer`.

    Params: ``tuple(params_1, ..., params_L)``. Errors raised by a layer are
    re-raised with its position, e.g. ``"... [layer 2 (Dense(1)) of serial]"``.
    """
    if not layers:
        raise ValueError("serial: needs at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (a constructor? call it, e.g. fn.Dense(3))" if callable(layer) else ""
            raise TypeError(f"serial: argument {i} is {layer!r}, not a fnnet Layer{hint}")
    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"
    short = "serial"

    def init(key, input_shape):
        keys = jax.random.split(key, len(layers))
        params, shape = [], tuple(input_shape)
        for i, (layer, k) in enumerate(zip(layers, keys)):
            try:
                p = layer.init(k, shape)
                shape = output_shape(layer, p, shape)
            except (ValueError, TypeError) as err:
                _raise_with_position(err, i, layer, short)
            params.append(p)
        return tuple(params)

    def fwd(params, x, *, key=None):
        check_serial_params(short, params, len(layers))
        residuals = []
        for i, (layer, p, k) in enumerate(zip(layers, params, layer_keys(key, len(layers)))):
            try:
                x, r = layer.fwd(p, x, key=k)
            except (ValueError, TypeError) as err:
                _raise_with_position(err, i, layer, short)
            residuals.append(r)
        return x, tuple(residuals)

    def bwd(residuals, dy):
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dparams[i], dy = layers[i].bwd(residuals[i], dy)
        return tuple(dparams), dy

    layer = named(name, init, fwd, bwd, needs_key=any(l.needs_key for l in layers))
    fwd.fnnet_layers = layers
    return layer


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

    def fwd(params, x, *, key=None):
        y, res = layer.fwd(params, x, key=key)
        check(jnp.shape(x), jnp.shape(y))
        return x + y, res

    def bwd(res, dy):
        dparams, dx = layer.bwd(res, dy)
        return dparams, (dx + dy).astype(dx.dtype)

    return named(name, init, fwd, bwd, needs_key=layer.needs_key)
