"""Hugging Face-format checkpoints: ``from_pretrained`` and ``save_pretrained``.

A directory holds ``config.json`` and ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``, read too). ``model_type`` "gpt2" or "llama"::

    model, params = fn.models.from_pretrained("path/to/dir")                 # file's dtype
    model, params = fn.models.from_pretrained("path/to/dir", dtype=jnp.float64)   # under x64
    fn.models.save_pretrained("out/dir", model, params)       # transformers loads it
    fn.models.save_pretrained("grads/dir", model, grads)      # any tree of params' structure

Names and layouts (``i`` the block, ``fnnet path`` into the params tuple; ``T``: the
tensor is the transpose of the fnnet leaf)::

    GPT-2 (N blocks; block i is params[2 + i]; files may omit the "transformer." prefix)
      transformer.wte.weight                (V, d)        [0]["table"]
      transformer.wpe.weight                (P, d)        [1]["table"]
      transformer.h.i.ln_1.weight / .bias                 [2+i][0][0]["scale" / "bias"]
      transformer.h.i.attn.c_attn.weight    (d, 3d)       [2+i][0][1]["w_qkv"]  (.bias: "b_qkv")
      transformer.h.i.attn.c_proj.weight    (d, d)        [2+i][0][1]["w_o"]    (.bias: "b_o")
      transformer.h.i.ln_2.weight / .bias                 [2+i][1][0]["scale" / "bias"]
      transformer.h.i.mlp.c_fc.weight       (d, n_inner)  [2+i][1][1][0]["w"]   (.bias: "b")
      transformer.h.i.mlp.c_proj.weight     (n_inner, d)  [2+i][1][1][2]["w"]   (.bias: "b")
      transformer.ln_f.weight / .bias                     [2+N]["scale" / "bias"]
      lm_head.weight                        (V, d)        [3+N]["table"]  (absent when tied)
    Llama (block i is params[1 + i])
      model.embed_tokens.weight             (V, d)        [0]["table"]
      model.layers.i.input_layernorm.weight               [1+i][0][0]["scale"]
      model.layers.i.self_attn.q_proj.weight  (H dh, d)   [1+i][0][1]["w_q"]  T  (k, v, o alike;
                                                          biases "b_q".. verbatim)
      model.layers.i.post_attention_layernorm.weight      [1+i][1][0]["scale"]
      model.layers.i.mlp.gate_proj.weight  (hidden, d)    [1+i][1][1]["w_gate"]  T  (up, down)
      model.norm.weight                                   [1+N]["scale"]
      lm_head.weight                        (V, d)        [2+N]["table"]  (absent when tied)

GPT-2's ``Conv1D`` weights are ``(in, out)`` like fnnet's: no transpose. Llama's
``Linear`` weights are ``(out, in)``: transposed both ways. A tied head is written as
``transformers`` writes it: no ``lm_head.weight``, ``"tie_word_embeddings": true``.
Buffers some files carry (GPT-2's ``attn.bias``/``attn.masked_bias``, old Llamas'
``rotary_emb.inv_freq``) are ignored; any other unexpected tensor, a missing one or a
wrong shape is an error naming the tensor.

``config.json``: see :mod:`fnnet.models.config` for the field names. ``rope_theta`` is
read at the top level (older files) or in ``"rope_parameters"`` (newer) and written in
both places; rope scaling (a ``rope_type`` other than "default"), another activation
or GPT-2's per-layer attention scaling raise ``NotImplementedError``. Entries fnnet
does not use (token ids, ``initializer_range``...) are kept in the config's ``extra``
and written back; dropout probabilities are written as 0 unless the loaded file had
others (fnnet's models have no dropout).

dtypes: ``dtype=None`` keeps the file's (bfloat16 files are read as bfloat16);
``dtype=jnp.float64`` casts every float tensor (upcast float32 -> float64), which
needs ``jax_enable_x64``. Writes are atomic file by file (a temporary file in the
directory, flushed, then renamed over the old one), as fnnet's own checkpoints;
stale shards of an earlier sharded save are removed after the new file is in place.

``safetensors`` is an optional extra: ``pip install -e ".[hf]"``.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from ..checkpoint import write_atomically
from ..core import Layer
from .config import ModelConfig, attach_config, config_of
from .gpt2 import gpt2
from .llama import llama

__all__ = ["from_pretrained", "save_pretrained", "state_dict", "params_from_state_dict",
           "config_from_hf", "config_to_hf"]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
_BOOKKEEPING = ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype")


def _safetensors():
    try:
        import safetensors  # noqa: F401
        import safetensors.numpy
    except ImportError:
        raise ImportError('fn.models.from_pretrained / save_pretrained read and write .safetensors '
                          'files and need the safetensors package: pip install -e ".[hf]" '
                          '(or pip install safetensors)') from None
    return safetensors


# --- config.json <-> ModelConfig ----------------------------------------------------------

# (fnnet field, config.json key, transformers' default when the key is missing)
_GPT2_FIELDS = (("vocab_size", "vocab_size", 50257), ("max_positions", "n_positions", 1024),
                ("d_model", "n_embd", 768), ("num_layers", "n_layer", 12),
                ("num_heads", "n_head", 12), ("eps", "layer_norm_epsilon", 1e-5),
                ("tie_embeddings", "tie_word_embeddings", True))
_LLAMA_FIELDS = (("vocab_size", "vocab_size", 32000), ("d_model", "hidden_size", 4096),
                 ("hidden", "intermediate_size", 11008), ("num_layers", "num_hidden_layers", 32),
                 ("num_heads", "num_attention_heads", 32),
                 ("num_kv_heads", "num_key_value_heads", None), ("head_dim", "head_dim", None),
                 ("max_positions", "max_position_embeddings", 2048),
                 ("eps", "rms_norm_eps", 1e-6), ("tie_embeddings", "tie_word_embeddings", False),
                 ("attention_bias", "attention_bias", False), ("mlp_bias", "mlp_bias", False))
_CONSUMED = {"gpt2": {"n_inner", "activation_function", "scale_attn_weights",
                      "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
                      "add_cross_attention"},
             "llama": {"rope_theta", "rope_parameters", "rope_scaling", "hidden_act"}}


def _unsupported(what: str):
    return NotImplementedError(f"from_pretrained: {what} is not supported by fnnet's models")


def _rope_theta(d: dict) -> float:
    """``rope_theta`` from the top level or ``rope_parameters`` (default rope only)."""
    params = d.get("rope_parameters") or {}
    scaling = d.get("rope_scaling") or {}
    for where, p in (("rope_parameters", params), ("rope_scaling", scaling)):
        kind = p.get("rope_type", p.get("type", "default")) if isinstance(p, dict) else p
        if kind != "default":
            raise _unsupported(f"{where} with rope_type {kind!r} (rope scaling; only the default "
                               f"rotary embedding is implemented)")
    theta = params.get("rope_theta", d.get("rope_theta", 10000.0))
    return float(theta)


def config_from_hf(d: dict) -> ModelConfig:
    """A :class:`ModelConfig` from the dict of a ``config.json``."""
    kind = d.get("model_type")
    if kind not in ARCHITECTURES:
        raise ValueError(f"from_pretrained: model_type {kind!r} is not supported; fnnet reads "
                         f"{sorted(ARCHITECTURES)} checkpoints")
    fields = _GPT2_FIELDS if kind == "gpt2" else _LLAMA_FIELDS
    values = {f: d.get(k, default) for f, k, default in fields}
    values = {f: v for f, v in values.items() if v is not None}
    if kind == "gpt2":
        act = d.get("activation_function", "gelu_new")
        if act not in GELU_TANH:
            raise _unsupported(f"GPT-2 with activation_function {act!r} (fnnet's is gelu_new, "
                               f"the tanh GELU)")
        for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                        ("add_cross_attention", False)):
            if d.get(key, ok) != ok:
                raise _unsupported(f"GPT-2 with {key}={d[key]!r}")
        n_inner = d.get("n_inner")
        values["hidden"] = 4 * values["d_model"] if n_inner is None else n_inner
        values.update(attention_bias=True, mlp_bias=True)
    else:
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise _unsupported(f"Llama with hidden_act {act!r} (fnnet's SwiGLU uses silu)")
        values["rope_theta"] = _rope_theta(d)
    used = {k for _, k, _ in fields} | _CONSUMED[kind] | set(_BOOKKEEPING)
    extra = {k: v for k, v in d.items() if k not in used}
    return ModelConfig(kind, **values, extra=extra)


def config_to_hf(config: ModelConfig, dtype=None) -> dict:
    """The ``config.json`` dict of ``config`` (``dtype``: the weights' dtype, recorded)."""
    c = config
    if c.model_type == "gpt2":
        base = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
        own = {"n_inner": c.hidden, "activation_function": "gelu_new",
               "scale_attn_weights": True}
        fields = _GPT2_FIELDS
    else:
        base = {"attention_dropout": 0.0}
        own = {"hidden_act": "silu", "rope_theta": c.rope_theta,
               "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta}}
        fields = _LLAMA_FIELDS
    out = {"architectures": [ARCHITECTURES[c.model_type]], "model_type": c.model_type,
           **base, **c.extra, **{k: getattr(c, f) for f, k, _ in fields}, **own}
    if dtype is not None:
        out["dtype"] = jnp.dtype(dtype).name
    return dict(sorted(out.items()))


# --- names and layouts --------------------------------------------------------------------

def _names(config: ModelConfig):
    """``[(hf name, fnnet path, transposed)]`` for every tensor of the architecture (the
    head included; :func:`_expected` drops it when tied)."""
    c, out = config, []
    if c.model_type == "gpt2":
        out += [("transformer.wte.weight", (0, "table"), False),
                ("transformer.wpe.weight", (1, "table"), False)]
        for i in range(c.num_layers):
            h, b = f"transformer.h.{i}.", 2 + i
            for hf, path in (("ln_1", (0, 0)), ("ln_2", (1, 0))):
                out += [(h + hf + ".weight", (b, *path, "scale"), False),
                        (h + hf + ".bias", (b, *path, "bias"), False)]
            for hf, path, w, bias in (("attn.c_attn", (0, 1), "w_qkv", "b_qkv"),
                                      ("attn.c_proj", (0, 1), "w_o", "b_o"),
                                      ("mlp.c_fc", (1, 1, 0), "w", "b"),
                                      ("mlp.c_proj", (1, 1, 2), "w", "b")):
                out += [(h + hf + ".weight", (b, *path, w), False),
                        (h + hf + ".bias", (b, *path, bias), False)]
        out += [("transformer.ln_f.weight", (2 + c.num_layers, "scale"), False),
                ("transformer.ln_f.bias", (2 + c.num_layers, "bias"), False)]
    else:
        out.append(("model.embed_tokens.weight", (0, "table"), False))
        for i in range(c.num_layers):
            h, b = f"model.layers.{i}.", 1 + i
            out += [(h + "input_layernorm.weight", (b, 0, 0, "scale"), False),
                    (h + "post_attention_layernorm.weight", (b, 1, 0, "scale"), False)]
            for n in "qkvo":
                out.append((h + f"self_attn.{n}_proj.weight", (b, 0, 1, "w_" + n), True))
                if c.attention_bias:
                    out.append((h + f"self_attn.{n}_proj.bias", (b, 0, 1, "b_" + n), False))
            for n in ("gate", "up", "down"):
                out.append((h + f"mlp.{n}_proj.weight", (b, 1, 1, "w_" + n), True))
                if c.mlp_bias:
                    out.append((h + f"mlp.{n}_proj.bias", (b, 1, 1, "b_" + n), False))
        out.append(("model.norm.weight", (1 + c.num_layers, "scale"), False))
    head = (2 if c.model_type == "llama" else 3) + c.num_layers
    out.append(("lm_head.weight", (head, "table"), False))
    return out


def _path_of(keypath) -> tuple:
    return tuple(k.idx if isinstance(k, jax.tree_util.SequenceKey) else k.key for k in keypath)


def _expected(model: Layer, config: ModelConfig):
    """``(names, shapes, treedef)``: the architecture's tensors present in ``model``'s
    params (a tied head is absent), their fnnet shapes and the params' tree."""
    shapes = jax.eval_shape(lambda k: model.init(k, (1,)), jax.random.key(0))
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    by_path = {_path_of(p): s.shape for p, s in flat}
    names = [n for n in _names(config) if n[1] in by_path]
    if len(names) != len(flat):
        raise ValueError(f"{config.model_type}: the model's params do not have the layout of its "
                         f"config (a model changed after building?)")
    order = {_path_of(p): i for i, (p, _) in enumerate(flat)}
    names.sort(key=lambda n: order[n[1]])
    return names, [by_path[n[1]] for n in names], treedef


def _hf_shape(shape, transposed):
    return tuple(shape[::-1]) if transposed else tuple(shape)


def _check_config(model: Layer, where: str) -> ModelConfig:
    config = config_of(model)
    if config is None:
        raise ValueError(f"{where}: {model.name} carries no architecture config; build the model "
                         f"with fn.models.gpt2 / gpt / llama, or load it with "
                         f"fn.models.from_pretrained")
    return config


def state_dict(model: Layer, tree) -> dict:
    """``{hf name: numpy array}`` of ``tree`` (params, or any tree of their structure, e.g.
    gradients) in Hugging Face's names and layouts."""
    config = _check_config(model, "save_pretrained")
    names, shapes, treedef = _expected(model, config)
    leaves, got = jax.tree.flatten(tree)
    if got != treedef:
        raise ValueError(f"save_pretrained: the tree does not have the params' structure "
                         f"({len(leaves)} leaves, expected {len(names)}: "
                         f"{', '.join(n for n, _, _ in names[:3])}, ...); pass params from "
                         f"model.init / from_pretrained, or a tree like them (gradients)")
    out = {}
    for (name, _, transposed), shape, leaf in zip(names, shapes, leaves):
        if tuple(jnp.shape(leaf)) != tuple(shape):
            raise ValueError(f"save_pretrained: {name} has shape {_hf_shape(jnp.shape(leaf), transposed)}"
                             f", expected {_hf_shape(shape, transposed)} for the model's config")
        a = np.asarray(leaf)
        out[name] = np.ascontiguousarray(a.T if transposed else a)
    return out


def params_from_state_dict(model: Layer, tensors: dict, dtype=None, *, source: str = "the file"):
    """The params of ``model`` from ``{hf name: array}`` (numpy or anything
    ``np.asarray`` takes); ``dtype`` casts every float tensor. Errors name the tensor."""
    config = _check_config(model, "from_pretrained")
    names, shapes, treedef = _expected(model, config)
    tensors = _normalise(config, tensors, source)
    wanted = {n for n, _, _ in names}
    head_tied = "lm_head.weight" not in wanted
    if head_tied and "lm_head.weight" in tensors:  # older files write the tied head too
        head, emb = tensors.pop("lm_head.weight"), tensors[names[0][0]]
        if np.shape(head) != np.shape(emb) or not np.array_equal(np.asarray(head), np.asarray(emb)):
            raise ValueError(f"from_pretrained: {source} has an lm_head.weight that differs from "
                             f"{names[0][0]} but the config ties them (tie_word_embeddings=true); "
                             f"set tie_word_embeddings to false to load an untied head")
    missing = [n for n in wanted if n not in tensors]
    if missing:
        hint = (" (the config says tie_word_embeddings=false, so the head must be in the file)"
                if missing == ["lm_head.weight"] else "")
        raise ValueError(f"from_pretrained: {source} is missing {len(missing)} tensor(s) of the "
                         f"{config.model_type} architecture: {', '.join(sorted(missing)[:6])}"
                         f"{hint}")
    extra = sorted(set(tensors) - wanted)
    if extra:
        raise ValueError(f"from_pretrained: {source} has {len(extra)} tensor(s) the "
                         f"{config.model_type} architecture of config.json does not have: "
                         f"{', '.join(extra[:6])}; is config.json the one of these weights?")
    leaves = []
    for (name, _, transposed), shape in zip(names, shapes):
        a = tensors[name]
        if tuple(np.shape(a)) != _hf_shape(shape, transposed):
            raise ValueError(f"from_pretrained: {name} has shape {tuple(np.shape(a))} in {source}, "
                             f"expected {_hf_shape(shape, transposed)} for config.json")
        leaves.append(_to_jax(name, a.T if transposed else a, dtype))
    return jax.tree.unflatten(treedef, leaves)


def _normalise(config: ModelConfig, tensors: dict, source: str) -> dict:
    """Drop ignored buffers; GPT-2 names get the "transformer." prefix when it is missing."""
    out = {}
    for name, a in tensors.items():
        if name.endswith(IGNORED_SUFFIXES):
            continue
        if config.model_type == "gpt2" and not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name
        if name in out:
            raise ValueError(f"from_pretrained: {source} holds {name} twice (with and without "
                             f"the 'transformer.' prefix)")
        out[name] = a
    return out


def _to_jax(name: str, a, dtype):
    a = a if isinstance(a, jax.Array) else np.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"from_pretrained: {name} has dtype {a.dtype}; weights must be floats")
    target = jnp.dtype(a.dtype if dtype is None else dtype)
    if target == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(f"from_pretrained: {name} would be float64 "
                         f"({'asked for' if dtype is not None else 'as in the file'}) but JAX "
                         f"runs in 32 bits; enable it first (jax.config.update("
                         f"'jax_enable_x64', True) or `with jax.enable_x64(True):`) or pass "
                         f"dtype=jnp.float32")
    return jnp.asarray(a).astype(target) if a.dtype != target else jnp.asarray(a)


# --- files ---------------------------------------------------------------------------------

def _read_tensors(directory: str) -> tuple[dict, str]:
    st = _safetensors()
    single, index = os.path.join(directory, WEIGHTS), os.path.join(directory, INDEX)
    if os.path.exists(single):
        files, source = [single], single
    elif os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map", {})
        files = sorted({os.path.join(directory, v) for v in weight_map.values()})
        source = index
    else:
        raise FileNotFoundError(f"from_pretrained: {directory} has neither {WEIGHTS} nor {INDEX}")
    tensors = {}
    for path in files:
        with st.safe_open(path, framework="np") as f:
            for k in f.keys():
                try:
                    tensors[k] = f.get_tensor(k)
                except (TypeError, KeyError, ValueError):  # bfloat16 in an older safetensors
                    with st.safe_open(path, framework="flax") as g:
                        tensors[k] = g.get_tensor(k)
    return tensors, source


def model_from_config(config: ModelConfig, *, memory: str = "full",
                      block_size: int = 128) -> Layer:
    """The model ``config`` describes, built by ``fn.models.gpt2`` or ``fn.models.llama``
    (``memory`` and ``block_size`` choose the attention core, not the architecture)."""
    c = config
    if c.model_type == "gpt2":
        model = gpt2(c.vocab_size, c.max_positions, c.d_model, c.num_heads, c.num_layers,
                     n_inner=c.hidden, eps=c.eps, tie_embeddings=c.tie_embeddings,
                     memory=memory, block_size=block_size)
    else:
        model = llama(c.vocab_size, c.d_model, c.num_heads, c.num_layers, c.hidden,
                      num_kv_heads=c.num_kv_heads, head_dim=c.head_dim, rope_theta=c.rope_theta,
                      eps=c.eps, tie_embeddings=c.tie_embeddings, max_len=c.max_positions,
                      attention_bias=c.attention_bias, mlp_bias=c.mlp_bias, memory=memory,
                      block_size=block_size)
    return attach_config(model, config)


def from_pretrained(directory, dtype=None, *, memory: str = "full",
                    block_size: int = 128) -> tuple[Layer, object]:
    """``(model, params)`` from a Hugging Face-format directory (see the module docstring).

    ``dtype``: None keeps the file's float dtype; a dtype casts every float tensor
    (``jnp.float64`` needs ``jax_enable_x64``). ``memory``/``block_size`` choose the
    attention core (``"lean"``: FlashAttention's backward), not the architecture.
    """
    directory = os.fspath(directory)
    path = os.path.join(directory, CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"from_pretrained: {directory} has no {CONFIG}")
    with open(path) as f:
        config = config_from_hf(json.load(f))
    model = model_from_config(config, memory=memory, block_size=block_size)
    tensors, source = _read_tensors(directory)
    return model, params_from_state_dict(model, tensors, dtype, source=source)


def _write_text(text: str):
    def write(path):
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)
    return write


def save_pretrained(directory, model: Layer, params) -> None:
    """Write ``config.json`` and ``model.safetensors`` of ``params`` (or any tree of their
    structure) to ``directory`` (created if needed; other files in it are kept).

    ``transformers``' ``AutoModelForCausalLM.from_pretrained(directory)`` loads it. The
    tensors keep their dtype (recorded as the config's ``dtype``)."""
    st = _safetensors()
    config = _check_config(model, "save_pretrained")
    tensors = state_dict(model, params)
    dtypes = {a.dtype for a in tensors.values()}
    dtype = max(dtypes, key=lambda d: d.itemsize) if dtypes else None
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    write_atomically(os.path.join(directory, WEIGHTS),
                     lambda tmp: st.numpy.save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config_to_hf(config, dtype), indent=2) + "\n"
    write_atomically(os.path.join(directory, CONFIG), _write_text(text))
    _remove_old_shards(directory)


def _remove_old_shards(directory: str) -> None:
    """An earlier sharded save would shadow nothing (``model.safetensors`` is read first) but
    confuses other readers: remove its index and the shards it lists."""
    index = os.path.join(directory, INDEX)
    if not os.path.exists(index):
        return
    try:
        with open(index) as f:
            shards = set(json.load(f).get("weight_map", {}).values())
    except (OSError, ValueError):
        shards = set()
    for name in shards:
        p = os.path.join(directory, name)
        if os.path.basename(p) != WEIGHTS and os.path.exists(p):
            os.remove(p)
    os.remove(index)
