"""Named bias-optional projections ``x @ w_<n> (+ b_<n>)``, shared by the layers made of
several of them (:mod:`.gqa`, :mod:`.swiglu`): their params, the key check, and their
per-example gradients and ghost norms (each projection is a Dense layer over the
positions of an example, as in :mod:`.dense`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..sqnorm import ghost_sqnorm


def init(key, shapes: dict, bias: bool, w_init, b_init, dtype) -> dict:
    """``{"w_<n>": shape}`` (+ ``{"b_<n>": (shape[1],)}`` with ``bias``) for ``shapes =
    {n: (in, out)}``."""
    keys = jax.random.split(key, 2 * len(shapes))
    params = {"w_" + n: w_init(k, s, dtype) for (n, s), k in zip(shapes.items(), keys)}
    if bias:
        params.update({"b_" + n: b_init(k, (s[1],), dtype)
                       for (n, s), k in zip(shapes.items(), keys[len(shapes):])})
    return params


def check_keys(name: str, params, names, bias: bool):
    """``ValueError`` unless ``params`` has exactly the keys of :func:`init`."""
    want = {"w_" + n for n in names} | ({"b_" + n for n in names} if bias else set())
    if not isinstance(params, dict) or set(params) != want:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: params must have the keys {sorted(want)}, got {got}; "
                         f"pass the params from init")


def linear(params, n: str, x):
    """``x @ w_<n> (+ b_<n>)``."""
    y = x @ params["w_" + n]
    return y + params["b_" + n] if "b_" + n in params else y


def per_example(pairs: dict, bias: bool, dtype) -> dict:
    """Per-example gradients from ``{n: (input (N, T, in), output cotangent (N, T, out))}``."""
    out = {}
    for n, (a, g) in pairs.items():
        out["w_" + n] = jnp.einsum("nti,nto->nio", a, g)
        if bias:
            out["b_" + n] = jnp.sum(g, axis=1)
    return {n: a.astype(dtype) for n, a in out.items()}


def sqnorm(pairs: dict, bias: bool):
    """``(N,)``: the squared norms of :func:`per_example`'s gradients, by ghost norms."""
    total = 0.0
    for a, g in pairs.values():
        total = total + ghost_sqnorm(a, g)
        if bias:
            total = total + jnp.sum(jnp.square(jnp.sum(g, axis=1)), axis=-1)
    return total
