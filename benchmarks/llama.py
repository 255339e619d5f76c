"""Llama benchmark cases: a Llama-style train step, and generation with and without a KV cache.

14. Llama train step (AdamW): a small Llama (``fn.models.llama``: RMSNorm, grouped-query
    attention with rotary positions, SwiGLU, untied head): fnnet manual vs autodiff
    (``jax.grad`` of the same forward) vs the memory-lean attention vs PyTorch eager on
    the same weights -- ``transformers``' ``LlamaForCausalLM`` loaded from the directory
    ``fn.models.save_pretrained`` wrote (its default ``sdpa`` attention); time per step
    and compiled temporary memory (XLA ``memory_analysis``).
15. Generation throughput: ``fn.models.generate`` of 256 new tokens (greedy) after a
    16-token prompt with the KV cache vs ``cache=False`` (the full forward over the id
    buffer for every token), and ``transformers``' greedy ``generate`` (KV cache,
    PyTorch eager) on the same weights; tokens/s, the compile time of the first call,
    and how often the decode step was traced (once per compiled program: no recompile
    per token).
"""

from __future__ import annotations

import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.models.generate import TRACES

from . import peers
from .timing import block, interleaved, summary, timed_call
from .transformer import lm_step_case


NO_CACHE = "fnnet generate, cache=False"     # the full forward over the buffer per token


def llama_sizes(quick: bool) -> dict:
    if quick:
        return dict(vocab=32, d=32, heads=4, kv_heads=2, hidden=64, layers=1, T=16, batch=2)
    return dict(vocab=96, d=256, heads=4, kv_heads=2, hidden=704, layers=2, T=256, batch=16)


def build(s: dict, memory: str = "full", max_len: int | None = None):
    return fn.models.llama(s["vocab"], s["d"], s["heads"], s["layers"], s["hidden"],
                           num_kv_heads=s["kv_heads"], max_len=max_len or s["T"],
                           memory=memory)


def transformers_available() -> tuple[bool, str]:
    ok, why = peers.torch_available()
    if not ok:
        return ok, why
    try:
        import transformers
    except ImportError:
        return False, ("transformers not installed: the PyTorch peer (LlamaForCausalLM) is "
                       "skipped (never an fnnet dependency)")
    return True, f"{why}; transformers {transformers.__version__}"


def torch_llama(model, params, **kwargs):
    """``transformers.LlamaForCausalLM`` with fnnet's weights, through the Hugging Face
    directory ``fn.models.save_pretrained`` writes (float32, eval mode)."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        fn.models.save_pretrained(tmp, model, jax.device_get(params))
        hf = transformers.LlamaForCausalLM.from_pretrained(tmp, dtype=torch.float32, **kwargs)
    return hf.eval()


class TorchLlamaStep(peers.TorchTrainStep):
    """One AdamW step of ``LlamaForCausalLM`` (logits, then the mean cross-entropy over
    (batch, T) against the same labels as fnnet's step)."""

    def __init__(self, hf, lr: float, threads=None):
        import torch

        self.torch, self.hf, self.threads = torch, hf.train(), threads
        self.opt = torch.optim.AdamW(hf.parameters(), lr=lr)

    def loss(self, ids, labels):
        logits = self.hf(input_ids=ids).logits
        return self.torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                      labels.reshape(-1))


# --- 14. Llama train step ----------------------------------------------------------------

def case_llama(cfg, device) -> dict:
    s = llama_sizes(cfg.quick)
    case = lm_step_case(
        cfg, device, s, lambda memory: build(s, memory),
        lambda params, threads: TorchLlamaStep(torch_llama(build(s), params), 1e-3,
                                               threads=threads),
        transformers_available,
        f"14. Llama train step: d={s['d']}, {s['heads']} heads / {s['kv_heads']} kv heads, "
        f"SwiGLU {s['hidden']}, {s['layers']} blocks, T={s['T']}, batch {s['batch']}, vocab "
        f"{s['vocab']}, AdamW")
    case["notes"].append("PyTorch: transformers' LlamaForCausalLM (its default sdpa attention) "
                         "loaded from the directory fn.models.save_pretrained wrote")
    return case


# --- 15. generation throughput -----------------------------------------------------------

def generate_sizes(quick: bool) -> dict:
    s = llama_sizes(quick)
    return dict(s, prompt=8 if quick else 16, new=16 if quick else 256, batch=1)


def case_generate(cfg, device) -> dict:
    s = generate_sizes(cfg.quick)
    notes = []
    total = s["prompt"] + s["new"]
    model = build(s, max_len=total)
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), (s["T"],))
    prompt = jnp.asarray(np.random.default_rng(0).integers(0, s["vocab"], (s["batch"],
                                                                          s["prompt"])), jnp.int32)
    params, prompt = jax.device_put((params, prompt), device)
    fns, first_call, traces, out = {}, {}, {}, {}
    for name, cache in (("fnnet generate, KV cache", True),
                        (NO_CACHE, False)):
        before = dict(TRACES)
        call = (lambda cache=cache: block(fn.models.generate(model, params, prompt, s["new"],
                                                       cache=cache)))
        first_call[name] = timed_call(lambda: out.__setitem__(name, call()))
        for _ in range(2):
            call()                                 # again: must not trace
        traces[name] = {k: TRACES[k] - before.get(k, 0) for k in ("program", "step")}
        fns[name] = call
    same = bool(np.array_equal(*(np.asarray(v) for v in out.values())))
    notes.append(f"cached and uncached ids equal: {same}")
    ok, why = transformers_available()
    notes.append(why)
    if ok and cfg.device == "cpu":
        import torch

        hf = torch_llama(model, params)
        hf.generation_config.eos_token_id = None        # exactly s["new"] tokens, as fnnet
        tprompt = torch.tensor(np.asarray(prompt, np.int64))

        def hf_generate():
            with torch.no_grad():
                return hf.generate(tprompt, max_new_tokens=s["new"], do_sample=False,
                                   pad_token_id=0)

        name = "transformers generate (KV cache)"
        first_call[name] = timed_call(lambda: out.__setitem__(name, hf_generate()))
        fns[name] = hf_generate
        ref = np.asarray(out["fnnet generate, KV cache"])[0, s["prompt"]:]
        got = out[name].numpy()[0, s["prompt"]:]
        agree = int(np.argmax(ref != got)) if np.any(ref != got) else len(ref)
        notes.append(f"transformers' greedy ids equal fnnet's for the first {agree} of "
                     f"{len(ref)} new tokens (float32)")
    t = interleaved(fns, rounds=2 if cfg.quick else 5, reps=1 if not cfg.quick else 2,
                    pause=cfg.pause)
    ref = t["fnnet generate, KV cache"]
    rows = []
    tokens = s["new"] * s["batch"]
    for name, res in t.items():
        rows.append({"impl": name, "time_s": {k: v for k, v in res.items() if k != "rounds"},
                     "rounds_s": res["rounds"], "per_s": 1.0 / res["median"],
                     "tokens_per_s": tokens / res["median"],
                     "ratio_ref_over_this": summary([a / b for a, b in zip(ref["rounds"],
                                                                          res["rounds"])]),
                     "first_call_s": first_call[name], **({"traces": traces[name]}
                                                          if name in traces else {})})
    notes.append("tokens/s: " + ", ".join(f"{r['impl']} {r['tokens_per_s']:,.0f}" for r in rows))
    notes.append("traces while generating 3 times: " + ", ".join(
        f"{k}: {v['program']} program, {v['step']} decode step" for k, v in traces.items()))
    cached = t["fnnet generate, KV cache"]
    uncached = t[NO_CACHE]
    speedup = summary([b / a for a, b in zip(cached["rounds"], uncached["rounds"])])
    return {"title": f"15. generation: {s['new']} new tokens after a {s['prompt']}-token prompt, "
                     f"batch {s['batch']}, greedy, the case-14 Llama (d={s['d']}, {s['layers']} "
                     f"blocks)", "rows": rows, "sizes": s, "traces": traces,
            "cache_speedup": speedup, "cached_equals_uncached": same, "notes": notes}


def targets(results: dict):
    """``[(name, value, ok, near, detail)]`` for cases 14 and 15."""
    out = []
    if "llama" in results:
        g = results["llama"]
        q = g["manual_over_autodiff_paired"]
        out.append(("llama: manual/autodiff <= 1.00", q["median"], q["median"] <= 1.0,
                    q["median"] <= 1.03 and q["q1"] <= 1.0,
                    f"{q['n']} back-to-back pairs, IQR {q['q1']:.3f}-{q['q3']:.3f}"))
        v = g["temp_ratio_manual_over_autodiff"]
        out.append(("llama: manual temp memory <= autodiff", v, v <= 1.0, False,
                    f"lean attention: {g['temp_ratio_lean_over_autodiff']:.3f}"))
    if "generate" in results:
        g = results["generate"]
        q = g["cache_speedup"]
        out.append(("generate: KV cache faster than no cache (tokens/s ratio)", q["median"],
                    q["median"] > 1.0, False, f"per-round {q['min']:.2f}-{q['max']:.2f}"))
        once = all(v["program"] == 1 and v["step"] == 1 for v in g["traces"].values())
        out.append(("generate: one compile per program, no recompile per token",
                    float(once), once and g["cached_equals_uncached"], False,
                    "; ".join(f"{k}: {v}" for k, v in g["traces"].items())))
    return out
