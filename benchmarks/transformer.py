"""Transformer benchmark cases: a GPT train step, and attention alone at long sequences.

7. GPT train step (AdamW): fnnet manual vs autodiff (``jax.grad`` of the same
   forward) vs the memory-lean attention vs PyTorch eager on the same weights;
   time per step and compiled temporary memory (XLA ``memory_analysis``).
8. Attention alone (one causal ``MultiHeadAttention``, forward + backward) at
   T = 256, 1024, 2048: compiled temporary memory and time of the full manual
   backward, the memory-lean backward, and ``jax.vjp`` of the full forward.

"temp" is XLA's temporary buffer size for the whole compiled function: the
residuals kept between forward and backward plus the backward's own scratch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn
from fnnet.models import gpt

from . import peers
from .cases import fnnet_steps
from .timing import block, compile_ratios, interleaved, paired, ratio, step_rows


def _memory(compiled) -> dict:
    from .cases import memory

    return memory(compiled)


# --- 7. GPT train step ----------------------------------------------------------------

def gpt_sizes(quick: bool) -> dict:
    if quick:
        return dict(vocab=32, d=32, heads=2, layers=1, T=16, batch=2)
    return dict(vocab=96, d=256, heads=4, layers=2, T=256, batch=16)


class TorchGPT(peers.TorchTrainStep):
    """The same GPT in PyTorch eager, weights copied from fnnet's params: Embedding +
    position table, pre-LN blocks (``nn.MultiheadAttention`` with a causal mask, GELU-tanh
    MLP), final LayerNorm, output projection tied to the embedding; AdamW."""

    def __init__(self, params, heads: int, lr: float, threads=None):
        import torch

        self.torch = torch
        nn = torch.nn
        t = lambda a: torch.tensor(np.array(a, np.float32))
        emb, pos, *blocks, ln_f, _ = params
        d = emb["table"].shape[1]
        self.wte = nn.Parameter(t(emb["table"]))
        self.wpe = nn.Parameter(t(pos["table"]))
        self.blocks = []
        mods = []
        for (ln1, att), (ln2, (fc, _, proj)) in blocks:
            l1, l2 = nn.LayerNorm(d), nn.LayerNorm(d)
            mha = nn.MultiheadAttention(d, heads, batch_first=True)
            f1, f2 = nn.Linear(d, fc["w"].shape[1]), nn.Linear(fc["w"].shape[1], d)
            with torch.no_grad():
                for m, p in ((l1, ln1), (l2, ln2)):
                    m.weight.copy_(t(p["scale"]))
                    m.bias.copy_(t(p["bias"]))
                mha.in_proj_weight.copy_(t(att["w_qkv"]).T)
                mha.in_proj_bias.copy_(t(att["b_qkv"]))
                mha.out_proj.weight.copy_(t(att["w_o"]).T)
                mha.out_proj.bias.copy_(t(att["b_o"]))
                for m, p in ((f1, fc), (f2, proj)):
                    m.weight.copy_(t(p["w"]).T)
                    m.bias.copy_(t(p["b"]))
            self.blocks.append((l1, mha, l2, f1, f2))
            mods += [l1, mha, l2, f1, f2]
        self.ln_f = nn.LayerNorm(d)
        with torch.no_grad():
            self.ln_f.weight.copy_(t(ln_f["scale"]))
            self.ln_f.bias.copy_(t(ln_f["bias"]))
        mods.append(self.ln_f)
        self.params = [self.wte, self.wpe] + [p for m in mods for p in m.parameters()]
        self.opt = torch.optim.AdamW(self.params, lr=lr)
        self.gelu = nn.GELU(approximate="tanh")
        self.threads = threads

    def loss(self, ids, labels):
        torch = self.torch
        T = ids.shape[1]
        x = self.wte[ids] + self.wpe[:T]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=ids.device), 1)
        for l1, mha, l2, f1, f2 in self.blocks:
            h = l1(x)
            x = x + mha(h, h, h, need_weights=False, attn_mask=mask)[0]
            x = x + f2(self.gelu(f1(l2(x))))
        logits = self.ln_f(x) @ self.wte.T
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1))


def lm_step_case(cfg, device, s: dict, build, peer, peer_available, title: str) -> dict:
    """A language model's train step (AdamW, softmax cross-entropy on random ids and
    labels): fnnet manual / autodiff / manual with the lean attention (time, paired
    ratio, compiled temp memory, trace and XLA compile time) and a PyTorch eager peer on
    the same weights (on a GPU: CUDA).

    ``build(memory)`` -> the fnnet model; ``peer(params, threads)`` -> an object with
    ``loss(ids, labels)`` and ``step(ids, labels)`` (:class:`peers.TorchTrainStep`);
    ``peer_available()`` -> ``(ok, note)``. ``s``: sizes with ``vocab, T, batch``.
    """
    notes = []
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, s["vocab"], (s["batch"], s["T"])), jnp.int32)
    labels = jnp.asarray(rng.integers(0, s["vocab"], (s["batch"], s["T"])), jnp.int32)
    loss, opt = fn.losses.softmax_cross_entropy, fn.optim.adamw(1e-3)
    models = {m: build(m) for m in ("full", "lean")}
    params = jax.jit(models["full"].init, static_argnums=1)(jax.random.key(0), (s["T"],))
    params, ids, labels = jax.device_put((params, ids, labels), device)
    state = opt.init(params)
    variants = {"fnnet manual": (models["full"], "manual"),
                "fnnet autodiff": (models["full"], "autodiff"),
                "fnnet manual, lean attention": (models["lean"], "manual")}
    if cfg.quick:                                      # quick: 2 compiles
        variants.pop("fnnet manual, lean attention")
    fns, mem, first_loss, compile_info = fnnet_steps(cfg, models["full"], loss, opt, params,
                                                     state, ids, labels, methods=variants)
    peers.torch_rows(cfg, fns, first_loss, notes,
                     lambda th: peer(jax.device_get(params), th),
                     lambda torch, dev: (torch.tensor(np.asarray(ids, np.int64), device=dev),
                                         torch.tensor(np.asarray(labels, np.int64),
                                                      device=dev)),
                     available=peer_available)
    t = interleaved(fns, rounds=cfg.rounds, reps=2 if cfg.quick else 5, pause=cfg.pause)
    pair = paired(fns["fnnet manual"], fns["fnnet autodiff"], pairs=4 if cfg.quick else 40)
    rows, temp = step_rows(t, mem, first_loss, notes, per_example=s["batch"] * s["T"],
                           compile_info=compile_info)
    return {"title": title, "rows": rows, "sizes": s, "memory": mem,
            "temp_ratio_manual_over_autodiff": temp["fnnet manual"] / temp["fnnet autodiff"],
            "temp_ratio_lean_over_autodiff":
                temp.get("fnnet manual, lean attention", float("nan")) / temp["fnnet autodiff"],
            "compile": compile_info,
            "compile_manual_over_autodiff": compile_ratios(compile_info, "fnnet manual",
                                                           "fnnet autodiff"),
            "manual_over_autodiff_paired": pair, "first_step_loss": first_loss, "notes": notes}


def case_gpt(cfg, device) -> dict:
    s = gpt_sizes(cfg.quick)
    return lm_step_case(
        cfg, device, s,
        lambda memory: gpt(s["vocab"], s["T"], d_model=s["d"], num_heads=s["heads"],
                           num_layers=s["layers"], memory=memory),
        lambda params, threads: TorchGPT(params, s["heads"], 1e-3, threads=threads),
        peers.torch_available,
        f"7. GPT train step: d={s['d']}, {s['heads']} heads, {s['layers']} blocks, "
        f"T={s['T']}, batch {s['batch']}, vocab {s['vocab']}, AdamW")


# --- 8. attention alone ----------------------------------------------------------------

def attention_lengths(quick: bool, gpu: bool = False):
    if quick:
        return (32,)
    return (1024, 4096) if gpu else (256, 1024, 2048)


def attention_functions(T: int, d: int, heads: int, batch: int, block_size: int = 128):
    """``{name: jitted (params, x, dy) -> (dparams, dx)}`` for the three backwards, and
    the example arguments."""
    layers = {m: fn.MultiHeadAttention(heads, causal=True, memory=m, block_size=block_size)
              for m in ("full", "lean")}

    def manual(layer):
        def f(p, x, dy):
            _, res = layer.fwd(p, x)
            return layer.bwd(res, dy)
        return jax.jit(f)

    def autodiff(p, x, dy):
        _, pullback = jax.vjp(lambda p, x: layers["full"].fwd(p, x)[0], p, x)
        return pullback(dy)

    rng = np.random.default_rng(0)
    params = jax.jit(layers["full"].init, static_argnums=1)(jax.random.key(0), (T, d))
    x = jnp.asarray(rng.standard_normal((batch, T, d)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((batch, T, d)), jnp.float32)
    return ({"full (manual)": manual(layers["full"]), "lean (manual)": manual(layers["lean"]),
             "jax.vjp of the full forward": jax.jit(autodiff)}, (params, x, dy))


def case_attention(cfg, device) -> dict:
    d, heads, batch = (32, 2, 1) if cfg.quick else (256, 4, 1)
    rows, by_len, notes = [], {}, []
    for T in attention_lengths(cfg.quick, cfg.device == "gpu"):
        fns_jit, args = attention_functions(T, d, heads, batch)
        args = jax.device_put(args, device)
        mem, fns = {}, {}
        for name, f in fns_jit.items():
            mem[name] = _memory(f.lower(*args).compile())["temp"]
            fns[name] = (lambda f=f: block(f(*args)))
        t = interleaved(fns, rounds=2 if cfg.quick else 3, reps=1 if T >= 2048 else 3,
                        pause=cfg.pause)
        auto = mem["jax.vjp of the full forward"]
        by_len[T] = {name: {"temp": mem[name], "temp_over_autodiff": mem[name] / auto}
                     for name in mem}
        ref = t["jax.vjp of the full forward"]
        for name, res in t.items():
            rows.append({"impl": f"T={T}: {name}", "time_s": {k: v for k, v in res.items()
                                                              if k != "rounds"},
                         "rounds_s": res["rounds"], "per_s": 1.0 / res["median"],
                         "ratio_ref_over_this": ratio(ref, res), "temp": mem[name],
                         "temp_over_autodiff": mem[name] / auto})
        notes.append(f"T={T} temp memory: " + ", ".join(
            f"{name} {m / 2**20:.1f} MiB ({m / auto:.2f}x)" for name, m in mem.items()))
    notes.append("ref/this here: jax.vjp's time over this row's (>1: faster than autodiff)")
    return {"title": f"8. causal attention alone, forward + backward: d={d}, {heads} heads, "
                     f"batch {batch}, lean block 128", "rows": rows, "by_length": by_len,
            "notes": notes}
