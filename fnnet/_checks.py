"""Input validation shared by layers and losses.

Every check runs on static shapes and dtypes, so it costs nothing under ``jit``
and fires at trace time with a message that names the layer, what was expected,
what came, and what to do.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def is_float(a) -> bool:
    """Whether ``a`` (an array or a scalar; not None) has a floating-point dtype."""
    return a is not None and jnp.issubdtype(jnp.result_type(a), jnp.floating)


def floating(name: str, x, what: str = "input"):
    """Raise ``TypeError`` unless ``x`` is a floating-point array."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating-point {what}, got dtype {dtype}. "
            f"Cast it first, e.g. x.astype(jnp.float32)."
        )


def batched(name: str, x, min_ndim: int = 2, layout: str = "(batch, features)"):
    """Raise ``ValueError`` unless ``x`` has at least ``min_ndim`` axes."""
    if jnp.ndim(x) < min_ndim:
        raise ValueError(
            f"{name}: expected a batched input of shape {layout}, got shape "
            f"{_fmt(jnp.shape(x))}. For a single example use x[None] (adds a batch axis)."
        )


def last_axis(name: str, x, expected: int, source: str):
    """Raise ``ValueError`` unless ``x.shape[-1] == expected``."""
    got = jnp.shape(x)[-1]
    if got != expected:
        raise ValueError(
            f"{name}: input has {got} features (shape {_fmt(jnp.shape(x))}) but "
            f"{source} expects {expected}. Re-run init with the right input shape "
            f"or fix the data."
        )


def same_shape(name: str, a, b, what_a: str, what_b: str, hint: str = ""):
    """Raise ``ValueError`` unless ``a`` and ``b`` have identical shapes (no broadcasting)."""
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{name}: {what_a} shape {_fmt(jnp.shape(a))} and {what_b} shape "
            f"{_fmt(jnp.shape(b))} must match exactly (fnnet never broadcasts silently)."
            + (f" {hint}" if hint else "")
        )


def rank(name: str, x, ndim: int, layout: str, hint: str = ""):
    """Raise ``ValueError`` unless ``x`` has exactly ``ndim`` axes (e.g. NHWC images)."""
    if jnp.ndim(x) != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d input {layout}, got shape {_fmt(jnp.shape(x))}."
            + (f" {hint}" if hint else "")
        )


def positive_pair(name: str, what: str, value) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, all >= 1) as a pair; ``ValueError`` otherwise."""
    pair = (value, value) if isinstance(value, int) else tuple(value) \
        if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name}: {what} must be a positive int or a pair of positive ints, "
                         f"got {value!r}")
    return pair


def window_fits(name: str, x, window, padded, padding: str):
    """Raise ``ValueError`` if a (dilated) ``window`` is larger than the ``padded`` input
    (height, width) of the NHWC input ``x``, i.e. the output would be empty."""
    if any(k > p for k, p in zip(window, padded)):
        raise ValueError(
            f"{name}: window {_fmt(window)} is larger than the input's spatial size "
            f"{_fmt(padded)} (input shape {_fmt(jnp.shape(x))}, padding {padding}), so the "
            f"output would be empty. Use a smaller window, more padding, or a larger input."
        )


def channels_last(name: str, x, expected: int, source: str):
    """Like :func:`last_axis` for channels-last images/signals (NHWC, NLC), with a hint
    when ``x`` looks channels-first (PyTorch's NCHW/NCL): axis 1 holds the ``expected``
    channels and the last axis does not."""
    shape = jnp.shape(x)
    if len(shape) > 2 and shape[-1] != expected and shape[1] == expected:
        perm = (0, *range(2, len(shape)), 1)
        raise ValueError(
            f"{name}: input shape {_fmt(shape)} looks channels-first (PyTorch's NCHW/NCL): "
            f"axis 1 has the {expected} channels {source} expects, the last axis has "
            f"{shape[-1]}. fnnet takes channels last (NHWC, NLC); transpose it first, e.g. "
            f"x.transpose{perm}."
        )
    last_axis(name, x, expected, source)


def nchw_looking_shape(name: str, input_shape):
    """Warn (``UserWarning``) when an image layer's ``init`` shape ``(H, W, C)`` reads
    like PyTorch's channels-first ``(C, H, W)``: a height of at most 4, smaller than
    both the width and the channels (``(1, 8, 8)``, ``(3, 32, 32)``). Training would
    run silently on 1-pixel-high images with 8 channels; the call-time check
    (:func:`channels_last`) cannot catch it because the params were made for it."""
    h, w, c = input_shape
    if h <= 4 and h < w and h < c:
        warnings.warn(
            f"{name}: init input_shape {_fmt(input_shape)} is read as one NHWC example of "
            f"height {h}, width {w} and {c} channels, but it looks channels-first (PyTorch's "
            f"NCHW: {h} channel(s) of {w}x{c}); its declared channels exceed its height. fnnet "
            f"takes (height, width, channels): for that data pass ({w}, {c}, {h}) and "
            f"transpose it with x.transpose(0, 2, 3, 1).", UserWarning, stacklevel=4)
