"""Hugging Face-format checkpoints without transformers: fnnet's writer -> reader round
trips (GPT-2 and Llama, tied and untied), names and layouts, both rope_theta placements,
dtypes, shards, and errors that name the tensor. (The equality with transformers itself
is tests/test_hf_transformers.py.)"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.models import hf

safetensors_numpy = pytest.importorskip("safetensors.numpy")
V, T = 13, 5


def tiny(kind, **kw):
    if kind == "gpt2":
        return fn.models.gpt2(V, 8, 8, 2, 1, **kw)
    return fn.models.llama(V, 8, 4, 1, 12, num_kv_heads=2, rope_theta=500.0, **kw)


def random_params(model, seed=0, dtype=jnp.float32):
    shapes = jax.eval_shape(lambda k: model.init(k, (T,)), jax.random.key(0))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [jnp.asarray(rng.standard_normal(s.shape), dtype)
                                        for s in leaves])


def read_dir(path):
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    return config, safetensors_numpy.load_file(os.path.join(path, "model.safetensors"))


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("kind, kw", [
    ("gpt2", {}), ("gpt2", dict(tie_embeddings=False)),
    ("llama", dict(attention_bias=True, mlp_bias=True)), ("llama", dict(tie_embeddings=True))])
def test_round_trip_keeps_params_config_and_names(tmp_path, kind, kw):
    model = tiny(kind, **kw)
    params = random_params(model)
    fn.models.save_pretrained(tmp_path, model, params)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]  # no temp files
    model2, params2 = fn.models.from_pretrained(tmp_path)
    assert fn.models.config_of(model2) == fn.models.config_of(model)
    assert_same(params2, params)
    config, tensors = read_dir(tmp_path)
    tied = fn.models.config_of(model).tie_embeddings
    assert config["model_type"] == kind and config["tie_word_embeddings"] is tied
    assert ("lm_head.weight" in tensors) is (not tied)       # transformers omits a tied head
    if kind == "gpt2":   # Conv1D is (in, out) like fnnet: verbatim
        np.testing.assert_array_equal(tensors["transformer.h.0.attn.c_attn.weight"],
                                      params[2][0][1]["w_qkv"])
        np.testing.assert_array_equal(tensors["transformer.h.0.mlp.c_proj.bias"],
                                      params[2][1][1][2]["b"])
        assert len(tensors) == 16 + (not tied)
    else:                # Linear is (out, in): transposed
        np.testing.assert_array_equal(tensors["model.layers.0.self_attn.k_proj.weight"],
                                      params[1][0][1]["w_k"].T)
        assert tensors["model.layers.0.mlp.down_proj.weight"].shape == (8, 12)
        assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 500.0
        assert config["num_key_value_heads"] == 2


def test_any_tree_of_the_params_structure_is_written_under_the_same_names(tmp_path):
    model = tiny("llama", tie_embeddings=True)
    params = random_params(model)
    grads = jax.tree.map(lambda a: 2 * a, params)
    fn.models.save_pretrained(tmp_path, model, grads)
    _, tensors = read_dir(tmp_path)
    np.testing.assert_array_equal(tensors["model.embed_tokens.weight"], 2 * params[0]["table"])
    with pytest.raises(ValueError, match="structure"):
        fn.models.save_pretrained(tmp_path, model, params[:-1])
    bad = (params[0], *params[1:-2], {"scale": jnp.ones(9)}, params[-1])
    with pytest.raises(ValueError, match=r"model.norm.weight has shape \(9,\), expected \(8,\)"):
        fn.models.save_pretrained(tmp_path, model, bad)
    with pytest.raises(ValueError, match="carries no architecture config"):
        fn.models.save_pretrained(tmp_path, fn.serial(fn.Dense(2)), ({"w": 1, "b": 2},))


@pytest.mark.parametrize("placement", ["top", "rope_parameters", "both"])
def test_rope_theta_is_read_from_either_place(tmp_path, placement):
    model = tiny("llama")
    fn.models.save_pretrained(tmp_path, model, random_params(model))
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    if placement == "top":
        del config["rope_parameters"]
    elif placement == "rope_parameters":
        del config["rope_theta"]
    path.write_text(json.dumps(config))
    assert fn.models.config_of(fn.models.from_pretrained(tmp_path)[0]).rope_theta == 500.0


@pytest.mark.parametrize("change, err, match", [
    (dict(model_type="bert"), ValueError, "model_type 'bert' is not supported"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}), NotImplementedError,
     "rope_type 'llama3'"),
    (dict(rope_scaling={"type": "linear", "factor": 2.0}), NotImplementedError, "rope scaling"),
    (dict(hidden_act="gelu"), NotImplementedError, "hidden_act 'gelu'"),
])
def test_unsupported_configs_are_clear_errors(tmp_path, change, err, match):
    model = tiny("llama")
    fn.models.save_pretrained(tmp_path, model, random_params(model))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(err, match=match):
        fn.models.from_pretrained(tmp_path)


def rewrite(tmp_path, edit):
    """Apply ``edit(tensors)`` to the saved weights."""
    _, tensors = read_dir(tmp_path)
    edit(tensors)
    safetensors_numpy.save_file(tensors, str(tmp_path / "model.safetensors"))


@pytest.mark.parametrize("kind, edit, match", [
    ("llama", lambda t: t.pop("model.layers.0.mlp.up_proj.weight"),
     "missing 1 tensor.*model.layers.0.mlp.up_proj.weight"),
    ("llama", lambda t: t.pop("lm_head.weight"), "lm_head.weight.*tie_word_embeddings=false"),
    ("llama", lambda t: t.update({"model.layers.0.self_attn.q_proj.weight": np.zeros((8, 4))}),
     r"model.layers.0.self_attn.q_proj.weight has shape \(8, 4\).*expected \(8, 8\)"),
    ("llama", lambda t: t.update({"model.layers.1.mlp.up_proj.weight": np.zeros((12, 8))}),
     "1 tensor.*does not have: model.layers.1.mlp.up_proj.weight"),
    ("gpt2", lambda t: t.update({"lm_head.weight": np.zeros((V, 8), np.float32)}),
     "lm_head.weight that differs"),
])
def test_bad_weights_are_errors_naming_the_tensor(tmp_path, kind, edit, match):
    model = tiny(kind)
    fn.models.save_pretrained(tmp_path, model, random_params(model))
    rewrite(tmp_path, edit)
    with pytest.raises(ValueError, match=match):
        fn.models.from_pretrained(tmp_path)


def test_gpt2_files_without_prefix_with_buffers_and_a_copied_tied_head(tmp_path):
    model = tiny("gpt2")
    params = random_params(model)
    fn.models.save_pretrained(tmp_path, model, params)

    def original_layout(t):      # the hub's gpt2 file: no "transformer.", attention buffers
        for k in list(t):
            t[k.removeprefix("transformer.")] = t.pop(k)
        t["h.0.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
        t["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
        t["lm_head.weight"] = t["wte.weight"]                    # a tied head written anyway
    rewrite(tmp_path, original_layout)
    assert_same(fn.models.from_pretrained(tmp_path)[1], params)


def test_dtypes_upcast_bfloat16_and_float64_needs_x64(tmp_path):
    model = tiny("llama")
    params = random_params(model)
    fn.models.save_pretrained(tmp_path / "f32", model, params)
    with jax.enable_x64(True):
        _, p64 = fn.models.from_pretrained(tmp_path / "f32", dtype=jnp.float64)
        assert {a.dtype for a in jax.tree.leaves(p64)} == {jnp.dtype(jnp.float64)}
        np.testing.assert_array_equal(p64[0]["table"], np.asarray(params[0]["table"], np.float64))
        fn.models.save_pretrained(tmp_path / "f64", model, p64)
        assert json.loads((tmp_path / "f64" / "config.json").read_text())["dtype"] == "float64"
    with pytest.raises(ValueError, match="jax_enable_x64"):
        fn.models.from_pretrained(tmp_path / "f32", dtype=jnp.float64)
    with pytest.raises(ValueError, match="as in the file"):
        fn.models.from_pretrained(tmp_path / "f64")
    bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    fn.models.save_pretrained(tmp_path / "bf16", model, bf16)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    assert_same(fn.models.from_pretrained(tmp_path / "bf16")[1], bf16)
    _, p32 = fn.models.from_pretrained(tmp_path / "bf16", dtype=jnp.float32)
    assert_same(p32, jax.tree.map(lambda a: a.astype(jnp.float32), bf16))


def test_sharded_files_are_read_and_a_new_save_replaces_them(tmp_path):
    model = tiny("llama")
    params = random_params(model)
    fn.models.save_pretrained(tmp_path, model, params)
    _, tensors = read_dir(tmp_path)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:5],
              "model-00002-of-00002.safetensors": names[5:]}
    for file, keys in shards.items():
        safetensors_numpy.save_file({k: tensors[k] for k in keys}, str(tmp_path / file))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}))
    os.remove(tmp_path / "model.safetensors")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert_same(fn.models.from_pretrained(tmp_path)[1], params)
    fn.models.save_pretrained(tmp_path, model, params)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_unused_config_entries_are_kept_and_written_back(tmp_path):
    model = tiny("gpt2")
    fn.models.save_pretrained(tmp_path, model, random_params(model))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "bos_token_id": 3,
                                "resid_pdrop": 0.1, "n_inner": None}))
    model2, params2 = fn.models.from_pretrained(tmp_path)
    assert fn.models.config_of(model2).hidden == 32                  # n_inner None: 4 d
    fn.models.save_pretrained(tmp_path / "again", model2, params2)
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert (config["bos_token_id"], config["resid_pdrop"], config["n_inner"]) == (3, 0.1, 32)


def test_missing_safetensors_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    model = tiny("gpt2")
    with pytest.raises(ImportError, match=r'pip install -e "\.\[hf\]"'):
        fn.models.save_pretrained(tmp_path, model, random_params(model))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        fn.models.from_pretrained(tmp_path)
    assert hf.config_to_hf(fn.models.config_of(model))["architectures"] == ["GPT2LMHeadModel"]
