"""fn.models.generate: the KV cache computes what the full forward computes, greedy decoding
equals transformers' token for token, sampling is reproducible, one compile per program.

Tiny float64 models (x64 inside each test): a GPT-2 (``fn.models.gpt2``) and a Llama with
grouped-query attention (``fn.models.llama``), their params perturbed away from init so
that no two logits tie. Each model is built once (``tiny``); few programs compile.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.models.generate import TRACES, decoder

generate = fn.models.generate

V, P, T0, NEW = 13, 16, 4, 9            # vocab, max positions, prompt length, new tokens


def perturb(params, seed, scale=0.3):
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [(a + scale * rng.standard_normal(a.shape)).astype(
        jnp.float64) for a in leaves])


def build(kind):
    if kind == "gpt2":
        return fn.models.gpt2(V, P, 8, 2, 2)
    return fn.models.llama(V, 8, 4, 2, 12, num_kv_heads=2, max_len=P)


@functools.lru_cache(maxsize=None)
def tiny(kind):
    """``(model, params float64, prompt (2, T0))``, built once per test run."""
    model = build(kind)
    with jax.enable_x64(True):
        params = perturb(jax.jit(model.init, static_argnums=1)(jax.random.key(0), (T0,)), 1)
    prompt = jnp.asarray(np.random.default_rng(2).integers(0, V, (2, T0)), jnp.int32)
    return model, params, prompt


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_decoding_equals_the_full_forward_at_every_step(kind):
    model, params, prompt = tiny(kind)
    with jax.enable_x64(True):
        ids, logits = generate(model, params, prompt, NEW, return_logits=True)
        assert ids.shape == (2, T0 + NEW) and ids.dtype == jnp.int32
        assert logits.shape == (2, NEW, V) and logits.dtype == jnp.float64
        np.testing.assert_array_equal(ids[:, :T0], prompt)
        full = fn.apply(model, params, ids)[:, T0 - 1:-1]      # uncached, every position
        np.testing.assert_allclose(logits, full, rtol=1e-12, atol=1e-12)
        # greedy: each new id is the argmax of the logits one position before
        np.testing.assert_array_equal(ids[:, T0:], jnp.argmax(full, axis=-1))
        if kind == "llama":   # cache=False: the full forward per token, in the same loop
            np.testing.assert_array_equal(generate(model, params, prompt, NEW, cache=False),
                                          ids)


@pytest.mark.parametrize("kind", [pytest.param("gpt2", marks=pytest.mark.slow), "llama"])
def test_sampling_is_reproducible_and_top_k_restricts_the_draws(kind):
    model, params, prompt = tiny(kind)
    with jax.enable_x64(True):
        greedy = np.asarray(generate(model, params, prompt, NEW, return_logits=True)[0])
        draw = lambda key, **kw: np.asarray(generate(model, params, prompt, NEW, key=key,
                                                       temperature=1.5, **kw))
        a, b = draw(jax.random.key(3)), draw(jax.random.key(3))
        np.testing.assert_array_equal(a, b)                                # same key, same ids
        assert not np.array_equal(a, draw(jax.random.key(4)))              # another key
        assert not np.array_equal(a, greedy)
        np.testing.assert_array_equal(draw(jax.random.key(3), top_k=1), greedy)  # top_k=1
        ids = draw(jax.random.key(5), top_k=2)
        logits = fn.apply(model, params, jnp.asarray(ids))[:, T0 - 1:-1]
        top2 = np.argsort(-np.asarray(logits), axis=-1)[..., :2]
        assert np.all((top2 == ids[:, T0:, None]).any(-1)), "a draw outside the top 2"
        assert not np.all(top2[..., 0] == ids[:, T0:]), "top_k=2 drew only the argmax"
        np.testing.assert_array_equal(draw(jax.random.key(3), top_k=V + 5), a)   # no filter


def test_one_program_per_shape_and_no_trace_per_token():
    model, params, _ = tiny("gpt2")
    rng = np.random.default_rng(0)
    prompts = [jnp.asarray(rng.integers(0, V, (1, 3)), jnp.int32) for _ in range(3)]
    key = jax.random.key(0)
    before = dict(TRACES)
    with jax.enable_x64(True):
        for i, p in enumerate(prompts):    # new prompts, temperatures and top_k, same shapes
            generate(model, params, p, 6, key=key, temperature=0.5 + i, top_k=2 + i)
        generate(build("gpt2"), params, prompts[0], 6, key=key, temperature=2.0,
                   top_k=3)                # a rebuilt, identical model: the same program
    assert TRACES["program"] - before.get("program", 0) == 1
    assert TRACES["step"] - before.get("step", 0) == 1    # the decode step, traced once


def test_clear_errors():
    model = build("gpt2")
    params = None                          # every check runs before the params are read
    ids = jnp.zeros((1, 3), jnp.int32)
    plain = fn.serial(fn.Embedding(V, 8), fn.Dense(V))
    with pytest.raises(ValueError, match="carries no architecture config"):
        generate(plain, params, ids, 2)
    with pytest.raises(ValueError, match=r"make 17 positions, but the model has 16"):
        generate(model, params, ids, 14)
    with pytest.raises(ValueError, match=r"needs a key.*key=jax.random.key\(0\)"):
        generate(model, params, ids, 2, temperature=0.7)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        generate(model, params, ids, 2, temperature=-1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"\(batch, T_prompt\).*ids\[None\]"):
        generate(model, params, ids[0], 2)
    with pytest.raises(TypeError, match="integer token ids"):
        generate(model, params, ids.astype(jnp.float32), 2)
    with pytest.raises(ValueError, match=r"in \[0, 13\).*\[0, 13\]"):
        generate(model, params, ids.at[0, 1].set(V), 2)
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        generate(model, params, ids, 2, top_k=0, temperature=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        generate(model, params, ids, -1)
    np.testing.assert_array_equal(generate(model, params, ids, 0), ids)   # nothing to add


def test_the_char_gpt_toy_model_has_the_gpt2_layout_generate_reads():
    """``fn.models.gpt`` (the character demo's model) carries a GPT-2 config; the demo
    test (tests/test_examples.py) samples from it through generate."""
    model = fn.models.gpt(V, 8, d_model=8, num_heads=2, num_layers=1)
    dec = decoder(model)
    assert (dec.kind, len(dec.blocks), dec.num_kv_heads, dec.max_positions) == ("gpt2", 1, 2, 8)


# --- transformers' greedy generate, token for token (float64) ----------------------------

@pytest.mark.parametrize("name", ["gpt2", "llama-gqa-bias", "llama-mqa-tied"])
def test_greedy_equals_transformers_generate(name, tmp_path):
    """A tiny random transformers model (tests/test_hf_transformers.py's: GPT-2; Llama with
    grouped-query heads and biases; tied Llama with one key/value head and head_dim != d /
    heads) saved by transformers, loaded by fnnet in float64: fnnet's greedy ids equal
    ``transformers``' greedy ``generate`` (its own KV cache) token for token. transformers'
    Llama is patched to compute RMSNorm, the rotary angles and the softmax in float64
    (``float64_llama``); unpatched the logits agree to ~1e-7, which could flip a near tie."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from test_hf_transformers import V as VOCAB, _hf_model, float64_llama

    hf = _hf_model(name, seed=3)
    hf.save_pretrained(tmp_path)
    hf.generation_config.eos_token_id = None              # always max_new_tokens, as fnnet
    prompt = np.random.default_rng(7).integers(0, VOCAB, (2, T0))
    with torch.no_grad(), float64_llama(name):
        want = hf.generate(torch.tensor(prompt), max_new_tokens=NEW, do_sample=False,
                           pad_token_id=0).numpy()
    assert len({tuple(r) for r in want[:, T0:]}) > 1      # not a degenerate continuation
    with jax.enable_x64(True):
        model, params = fn.models.from_pretrained(tmp_path, dtype=jnp.float64)
        got = np.asarray(generate(model, params, jnp.asarray(prompt, jnp.int32), NEW))
    np.testing.assert_array_equal(got, want)
