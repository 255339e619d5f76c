"""``generate``: continue token ids with a causal language model, a KV cache, one program.

::

    ids = fn.models.generate(model, params, prompt_ids, max_new_tokens,
                             key=None, temperature=0.0, top_k=None)
    prompt_ids (batch, T_prompt) int  ->  ids (batch, T_prompt + max_new_tokens) int32
                                          ids[:, :T_prompt] == prompt_ids

``model`` is an architecture fnnet knows (:func:`fnnet.models.config.config_of` says
which): ``fn.models.gpt2`` / ``fn.models.gpt`` (GPT-2) or ``fn.models.llama``, built
or loaded with ``fn.models.from_pretrained``.

Choosing each token from the logits ``z`` (vocab,) at the last position:

=========================  ============================================================
setting                    next id
=========================  ============================================================
``temperature=0``          ``argmax z`` (ties to the lowest id); ``key`` unused
``temperature=t > 0``      a draw from ``softmax(z / t)``, from ``fold_in(key, i)`` for
                           the ``i``-th new token (needs ``key``)
``+ top_k=k``              the same draw over the ``k`` largest ``z / t`` only (the rest
                           ``-inf``; ``k`` >= vocab filters nothing), as ``transformers``'
                           temperature-then-top-k order
=========================  ============================================================

The KV cache. Attention at position ``p`` needs the keys and values of positions
``0..p``; they do not change once computed (causal), so they are computed once and kept::

    prefill     the prompt through every layer at positions 0..T_prompt-1:
                k, v of each block written into caches (batch, kv_heads, total, head_dim)
    decode i    ONE token at position p = T_prompt + i through every layer:
                q, k, v = projections of that token (RoPE at angle p for Llama)
                cache[:, :, p] = k, v
                o = softmax(q k_cache^T / sqrt(dh) + M) v_cache,   M = -inf at keys > p
                (keys past p are still zeros in the cache; M hides them)

Everything else of a step is the layers' own forward on the new token: the embedding,
GPT-2's position table (``PositionalEmbedding``'s forward on the table's rows ``p..``),
the norms, the MLP / SwiGLU branch, the final norm and the output projection; only the
attention over the cache is new, and it is :mod:`fnnet.layers.gqa`'s ``attend`` (GPT-2's
multi-head attention is its case ``kv_heads = heads`` without RoPE). So a cached step
computes what the full forward computes at that position, in another order of
roundings (equal to ~1e-15 in float64; ``tests/test_generate.py``).

One compiled program per (batch, prompt length, total length, greedy or sampling, with
or without ``top_k``, model structure, params dtype): the prefill and a
``lax.fori_loop`` over the new tokens, so no token recompiles, and a new prompt of the
same shape, a new temperature or a new ``top_k`` reuses the program (they are data;
the ``top_k`` filter reads the ``k``-th largest logit off a sort). ``cache=False`` runs
the same loop without the cache: every step is the model's full forward over the
``(batch, total)`` id buffer (the not-yet-generated tail holds id 0, which causality
ignores), for reference and for the benchmark's with/without comparison.

Not done: stopping at an end-of-text id (the output always has ``max_new_tokens`` new
ids: cut at the first end id yourself), prompts of different lengths in one batch
(call once per length), nucleus (top-p) sampling, beam search.
"""

from __future__ import annotations

import collections
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..core import Layer, apply, meta
from ..layers import gqa
from ..layers.attention import split_heads
from ..structure import keyed
from .config import config_of

__all__ = ["generate", "pick_token"]

NAME = "generate"

# Python-side trace counts (incremented when JAX traces, never when a compiled program
# runs): "program" once per compiled generate, "step" once per traced decode step.
TRACES: collections.Counter = collections.Counter()


# --- choosing a token from logits --------------------------------------------------------

def pick_token(logits, key, step, *, temperature, greedy: bool, top_k=None):
    """The next ids ``(batch,)`` from ``logits (batch, vocab)``; see the module docstring.

    ``greedy`` (static) is ``temperature == 0``; otherwise ``temperature`` and ``top_k``
    (None: no filter; else ``1 <= top_k <= vocab``) may be traced, and the draw uses
    ``jax.random.fold_in(key, step)``. Ids tied with the ``top_k``-th largest logit stay.
    """
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    z = logits / jnp.asarray(temperature, logits.dtype)
    if top_k is not None:
        kth = lax.dynamic_index_in_dim(jnp.sort(z, axis=-1), z.shape[-1] - top_k, axis=-1)
        z = jnp.where(z < kth, -jnp.inf, z)
    return jax.random.categorical(jax.random.fold_in(key, step), z, axis=-1).astype(jnp.int32)


# --- the architecture, read from the model -----------------------------------------------

class Decoder(NamedTuple):
    """What a cached step needs, read from a model's layers and its config (static)."""

    kind: str                 # "gpt2" | "llama"
    fill: object              # params -> params with tied leaves filled (identity if untied)
    embed: Layer              # Embedding
    positional: Layer | None  # PositionalEmbedding (GPT-2) or None
    blocks: tuple             # per block: (norm, attention layer, mlp residual)
    first_block: int          # index of the first block in the top-level serial
    final_norm: Layer
    head: Layer               # Unembed
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float | None
    vocab_size: int
    max_positions: int


def _children(layer: Layer, kind: str = "serial"):
    """The children of a ``kind`` graph (:func:`fnnet.core.meta`), else None."""
    graph = meta(layer).graph
    return graph.children if graph is not None and graph.kind == kind else None


def _layout_error(model, what: str) -> ValueError:
    return ValueError(
        f"{NAME}: {model.name} does not have the layer layout of its config's architecture "
        f"({what}); generate reads fn.models.gpt2 / fn.models.gpt / fn.models.llama models "
        f"as they are built (a model changed after building needs its own decoding loop)")


def _config(model):
    cfg = config_of(model)
    if cfg is None:
        raise ValueError(
            f"{NAME}: {model.name} carries no architecture config, so generate cannot tell "
            f"how to cache its attention. Build the model with fn.models.gpt2, fn.models.gpt "
            f"or fn.models.llama, or load it with fn.models.from_pretrained; any other causal "
            f"model can be sampled by running fn.apply on the ids so far")
    return cfg


def decoder(model: Layer) -> Decoder:
    """Read ``model``'s pieces and its :class:`~fnnet.models.config.ModelConfig` (see
    :class:`Decoder`); a clear error for a model without a config or another layout."""
    cfg = _config(model)
    kind = cfg.model_type
    if kind not in ("gpt2", "llama"):
        raise ValueError(f"{NAME}: model_type {kind!r} is not supported; generate knows "
                         f"'gpt2' and 'llama'")
    fill, inner = (lambda p: p), model
    if _children(model, "tie") is not None:
        tied = meta(model).graph
        fill, inner = (lambda p: tied.params(p)[0]), tied.children[0]
    layers = _children(inner)
    n_layers = cfg.num_layers
    first = 2 if kind == "gpt2" else 1
    if layers is None or len(layers) != first + n_layers + 2:
        raise _layout_error(model, f"expected a serial of {first + n_layers + 2} layers")
    blocks = []
    for block in layers[first:first + n_layers]:
        halves = _children(block)
        if halves is None or len(halves) != 2:
            raise _layout_error(model, "a block is not serial(residual(...), residual(...))")
        attn_branch = _children(halves[0], "residual")
        pair = None if attn_branch is None else _children(attn_branch[0])
        if pair is None or len(pair) != 2 or _children(halves[1], "residual") is None:
            raise _layout_error(model, "a block's attention branch is not "
                                       "residual(serial(norm, attention))")
        blocks.append((pair[0], pair[1], halves[1]))
    return Decoder(
        kind=kind, fill=fill, embed=layers[0], positional=layers[1] if kind == "gpt2" else None,
        blocks=tuple(blocks), first_block=first, final_norm=layers[-2], head=layers[-1],
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
        rope_theta=cfg.rope_theta if kind == "llama" else None, vocab_size=cfg.vocab_size,
        max_positions=cfg.max_positions)


# --- attention of new tokens over the cache ----------------------------------------------

def _qkv(dec: Decoder, p, x, positions):
    """``(q, k, v)`` heads-major, ``q (batch, H, t, dh)`` unscaled, ``k, v (batch, KV, t,
    dh)``, of the new tokens ``x (batch, t, d)`` at ``positions (t,)``."""
    if dec.kind == "llama":
        return gqa.project_qkv(p, x, positions, num_heads=dec.num_heads,
                               num_kv_heads=dec.num_kv_heads, rope_theta=dec.rope_theta)
    qkv = x @ p["w_qkv"] + p["b_qkv"]              # GPT-2: MultiHeadAttention's packed q, k, v
    return tuple(split_heads(a, dec.num_heads) for a in jnp.split(qkv, 3, axis=-1))


def _cached_attention(dec: Decoder, p, x, cache, pos):
    """Attention of ``x (batch, t, d)`` at positions ``pos..pos+t-1`` over the cache, which
    receives their keys and values first; returns ``(y (batch, t, d), cache)``."""
    t = x.shape[1]
    positions = pos + jnp.arange(t)
    q, k, v = _qkv(dec, p, x, positions)
    k_cache, v_cache = cache
    k_cache = lax.dynamic_update_slice_in_dim(k_cache, k.astype(k_cache.dtype), pos, axis=2)
    v_cache = lax.dynamic_update_slice_in_dim(v_cache, v.astype(v_cache.dtype), pos, axis=2)
    sees = jnp.arange(k_cache.shape[2])[None, :] <= positions[:, None]    # (t, total): causal
    o = gqa.attend(q, k_cache, v_cache, sees[None])
    return gqa.project_out(p, o), (k_cache, v_cache)


def _forward_cached(dec: Decoder, params, ids, caches, pos):
    """Logits ``(batch, vocab)`` at the last of the new ids ``(batch, t)`` placed at
    positions ``pos..pos+t-1``, and the updated caches."""
    h, _ = dec.embed.fwd(params[0], ids)
    if dec.positional is not None:
        rows = lax.dynamic_slice_in_dim(params[1]["table"], pos, ids.shape[1])
        h, _ = dec.positional.fwd({"table": rows}, h)
    new = []
    for i, ((norm, _, mlp), cache) in enumerate(zip(dec.blocks, caches)):
        (p_norm, p_attn), p_mlp = params[dec.first_block + i]
        n, _ = norm.fwd(p_norm, h)
        a, cache = _cached_attention(dec, p_attn, n, cache, pos)
        h, _ = mlp.fwd(p_mlp, h + a)
        new.append(cache)
    h, _ = dec.final_norm.fwd(params[-2], h[:, -1:])
    logits, _ = dec.head.fwd(params[-1], h)
    return logits[:, 0], new


# --- the compiled programs ---------------------------------------------------------------

@partial(jax.jit, static_argnames=("model", "total", "greedy", "filtered", "cache",
                                   "with_logits"))
def _run(params, prompt, key, temperature, top_k, *, model, total, greedy, filtered, cache,
         with_logits):
    TRACES["program"] += 1
    model = model.obj
    b, t0 = prompt.shape
    ids = jnp.zeros((b, total), jnp.int32).at[:, :t0].set(prompt)

    def emit(i, logits, ids, out):
        """Choose the ``i``-th new id from ``logits (batch, vocab)``; keep the logits."""
        nxt = pick_token(logits, key, i, temperature=temperature, greedy=greedy,
                         top_k=top_k if filtered else None)
        if with_logits:
            out = lax.dynamic_update_index_in_dim(out, logits, i, axis=1)
        return lax.dynamic_update_index_in_dim(ids, nxt, t0 + i, axis=1), out

    if cache:
        dec = decoder(model)
        full = dec.fill(params)
        dtype = jnp.result_type(full[0]["table"])
        shape = (b, dec.num_kv_heads, total, dec.head_dim)
        state = [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in dec.blocks]
        first, state = _forward_cached(dec, full, prompt, state, 0)     # prefill

        def next_logits(i, ids, caches):                  # one id, at position t0 + i - 1
            last = lax.dynamic_slice_in_dim(ids, t0 + i - 1, 1, axis=1)
            return _forward_cached(dec, full, last, caches, t0 + i - 1)
    else:
        def next_logits(i, ids, state):                   # the full forward, every time
            logits = apply(model, params, ids)
            return lax.dynamic_index_in_dim(logits, t0 + i - 1, axis=1, keepdims=False), state

        first, state = next_logits(0, ids, ())
    out = jnp.zeros((b, total - t0, first.shape[-1]), first.dtype) if with_logits else ()
    ids, out = emit(0, first, ids, out)

    def step(i, carry):
        TRACES["step"] += 1
        ids, state, out = carry
        logits, state = next_logits(i, ids, state)
        ids, out = emit(i, logits, ids, out)
        return ids, state, out

    ids, _, out = lax.fori_loop(1, total - t0, step, (ids, state, out))
    return (ids, out) if with_logits else ids


def _check_int(what, v, low):
    if isinstance(v, np.integer):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"{NAME}: {what} must be an int >= {low}, got {v!r}")
    return v


def generate(model: Layer, params, prompt_ids, max_new_tokens: int, *, key=None,
             temperature: float = 0.0, top_k: int | None = None, cache: bool = True,
             return_logits: bool = False):
    """Continue ``prompt_ids (batch, T_prompt)`` by ``max_new_tokens`` ids.

    Returns int32 ids ``(batch, T_prompt + max_new_tokens)`` whose first ``T_prompt``
    columns are the prompt. ``temperature=0`` (default) is greedy decoding (``argmax``,
    ties to the lowest id); ``temperature > 0`` samples from ``softmax(logits /
    temperature)`` and needs ``key`` (a ``jax.random`` key: the same key gives the same
    ids); ``top_k`` restricts each draw to the ``top_k`` most likely ids. ``cache=False``
    recomputes the full forward for every token (same ids; slower, for comparison).
    ``return_logits=True`` returns ``(ids, logits)`` with ``logits (batch,
    max_new_tokens, vocab)`` the scores each new id was chosen from (before temperature
    and ``top_k``; ``transformers``' ``output_logits``).

    ``model`` must carry an architecture config (``fn.models.gpt2``, ``gpt``, ``llama``,
    ``from_pretrained``), and ``T_prompt + max_new_tokens`` must not exceed its maximum
    number of positions (a Llama's ``max_len`` too, although rotary positions have no
    table: build or load it with a larger one to generate further).
    Compiles once per (batch, T_prompt, total length, greedy or sampling, with or
    without ``top_k``); see the module docstring.
    """
    dec = decoder(model)
    prompt = jnp.asarray(prompt_ids)
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"{NAME}: prompt_ids must be integer token ids, got dtype "
                        f"{prompt.dtype}; convert with ids.astype(jnp.int32)")
    if prompt.ndim != 2 or prompt.shape[0] == 0 or prompt.shape[1] == 0:
        raise ValueError(f"{NAME}: prompt_ids must have shape (batch, T_prompt) with batch >= 1 "
                         f"and T_prompt >= 1, got shape {tuple(prompt.shape)}"
                         + (" (one prompt needs a batch axis: ids[None])"
                            if prompt.ndim == 1 else ""))
    if not isinstance(prompt, jax.core.Tracer):
        lo, hi = int(prompt.min()), int(prompt.max())
        if lo < 0 or hi >= dec.vocab_size:
            raise ValueError(f"{NAME}: prompt ids must be in [0, {dec.vocab_size}) (the "
                             f"vocabulary), got ids in [{lo}, {hi}]")
    new = _check_int("max_new_tokens", max_new_tokens, 0)
    total = prompt.shape[1] + new
    if total > dec.max_positions:
        raise ValueError(f"{NAME}: the prompt ({prompt.shape[1]} ids) plus max_new_tokens="
                         f"{new} make {total} positions, but the model has "
                         f"{dec.max_positions} (its maximum number of positions); shorten "
                         f"the prompt or generate fewer tokens")
    if isinstance(temperature, (jax.Array, np.ndarray, np.floating, np.integer)):
        temperature = float(temperature)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"{NAME}: temperature must be a finite number >= 0 (0: greedy), got "
                         f"{temperature!r}")
    greedy = temperature == 0
    if top_k is not None:
        top_k = _check_int("top_k", top_k, 1)
    if not greedy and key is None:
        raise ValueError(f"{NAME}: sampling at temperature={temperature} needs a key, e.g. "
                         f"generate(..., temperature={temperature}, key=jax.random.key(0)); "
                         f"temperature=0 (the default) is greedy and needs none")
    if key is None:
        key = jax.random.key(0)                  # unused by greedy decoding
    elif not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        key = jnp.asarray(key)
        if key.shape != (2,) or key.dtype != jnp.uint32:
            raise TypeError(f"{NAME}: key must be a jax.random key (jax.random.key(0)), got "
                            f"{type(key).__name__} of shape {key.shape}")
        key = jax.random.wrap_key_data(key)
    prompt = prompt.astype(jnp.int32)
    if new == 0:
        return (prompt, jnp.zeros((prompt.shape[0], 0, dec.vocab_size))) if return_logits \
            else prompt
    filtered = not greedy and top_k is not None
    return _run(params, prompt, key, 1.0 if greedy else float(temperature),
                jnp.int32(min(top_k, dec.vocab_size) if filtered else 1),
                model=keyed(model), total=total, greedy=greedy, filtered=filtered,
                cache=bool(cache), with_logits=bool(return_logits))
