"""12. Per-example gradient norms and DP-SGD clipping: fnnet vs ``vmap(grad)``.

On the 784-512-512-10 MLP (batch 256) and the small GPT of case 7 (batch 8; ``--quick``:
the small MLP alone), per jitted call:

* ``per_example_grad_norms`` (norm rules: ``||x_i||^2 ||dy_i||^2`` for Dense, ghost
  norms for sequences; no per-example gradient formed) vs the norms of
  ``jax.vmap(jax.grad(own loss))`` (every per-example gradient formed) and vs
  fnnet's ``per_example_grads`` (formed, by hand);
* the clipped mean gradient of DP-SGD: ``fn.dp.clipped_grad`` (norms, then one
  more backward with scaled cotangents) vs ``vmap(grad)`` + clip + mean.

Time per call (interleaved rounds) and XLA's compiled temporary memory ("temp").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn

from .timing import block, interleaved, ratio


def _memory(compiled) -> dict:
    from .cases import memory

    return memory(compiled)


def _own_grads(model, loss):
    def own(p, xi, yi):
        return loss.fwd(fn.apply(model, p, xi[None]), yi[None])[0]

    return jax.vmap(jax.grad(own), (None, 0, 0))


def _sqnorms(tree, n):
    return sum(jnp.sum(jnp.square(a).reshape(n, -1), axis=1) for a in jax.tree.leaves(tree))


def functions(model, loss, clip: float = 1.0) -> dict:
    """``{name: f(params, x, y)}``: the implementations compared."""
    vg = _own_grads(model, loss)

    def vmap_norms(p, x, y):
        return jnp.sqrt(_sqnorms(vg(p, x, y), x.shape[0]))

    def vmap_clipped(p, x, y):
        g = vg(p, x, y)
        n = x.shape[0]
        factor = clip / jnp.maximum(jnp.sqrt(_sqnorms(g, n)), clip)
        return jax.tree.map(lambda a: jnp.tensordot(factor, a, 1) / n, g)

    return {
        "fnnet per_example_grad_norms": lambda p, x, y: fn.per_example_grad_norms(
            model, loss, p, x, y),
        "vmap(jax.grad) norms": vmap_norms,
        "fnnet per_example_grads norms": lambda p, x, y: jnp.sqrt(
            _sqnorms(fn.per_example_grads(model, loss, p, x, y), x.shape[0])),
        "fnnet dp.clipped_grad": lambda p, x, y: fn.dp.clipped_grad(
            model, loss, l2_norm_clip=clip)(p, x, y)[1],
        "vmap(jax.grad) clip + mean": vmap_clipped,
    }


def _problems(cfg):
    from .transformer import gpt_sizes

    rng = np.random.default_rng(0)
    sizes, batch = cfg.mlp_sizes, cfg.mlp_batch
    mlp = fn.serial(*[layer for w in sizes[1:-1] for layer in (fn.Dense(w), fn.Relu)],
                    fn.Dense(sizes[-1]))
    x = jnp.asarray(rng.standard_normal((batch, sizes[0])), jnp.float32)
    y = jnp.asarray(rng.integers(0, sizes[-1], batch), jnp.int32)
    out = [(f"MLP {'-'.join(map(str, sizes))}, batch {batch}", mlp, (sizes[0],), x, y)]
    if cfg.quick:  # a smoke test: the MLP alone
        return out
    s = gpt_sizes(cfg.quick)
    s = dict(s, batch=min(s["batch"], 8))
    model = fn.models.gpt(s["vocab"], s["T"], d_model=s["d"], num_heads=s["heads"],
                          num_layers=s["layers"])
    ids = jnp.asarray(rng.integers(0, s["vocab"], (s["batch"], s["T"])), jnp.int32)
    labels = jnp.asarray(rng.integers(0, s["vocab"], (s["batch"], s["T"])), jnp.int32)
    out.append((f"GPT d={s['d']}, {s['layers']} blocks, T={s['T']}, batch {s['batch']}, "
                f"vocab {s['vocab']} (tied)", model, (s["T"],), ids, labels))
    return out


def case_per_example(cfg, device) -> dict:
    loss = fn.losses.softmax_cross_entropy
    rows, notes, by_model = [], [], {}
    for title, model, shape, x, y in _problems(cfg):
        params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), shape)
        params, x, y = jax.device_put((params, x, y), device)
        fns, mem, outs = {}, {}, {}
        chosen = functions(model, loss)
        if cfg.quick:  # a smoke test: fnnet's two functions and their references
            chosen = {k: v for k, v in chosen.items() if "per_example_grads" not in k}
        for name, f in chosen.items():
            jitted = jax.jit(f)
            try:
                mem[name] = _memory(jitted.lower(params, x, y).compile())
                outs[name] = jitted(params, x, y)
            except Exception as err:  # e.g. out of memory for the formed gradients
                notes.append(f"{title}: {name} failed: {type(err).__name__}: {str(err)[:120]}")
                continue
            fns[name] = (lambda j=jitted: block(j(params, x, y)))
        t = interleaved(fns, rounds=cfg.rounds, reps=2 if cfg.quick else 5, pause=cfg.pause)
        ref = t.get("vmap(jax.grad) norms")
        err_n = float(jnp.max(jnp.abs(outs["fnnet per_example_grad_norms"]
                                      - outs["vmap(jax.grad) norms"])
                              / outs["vmap(jax.grad) norms"]))
        err_c = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(
            jax.tree.leaves(outs["fnnet dp.clipped_grad"]),
            jax.tree.leaves(outs["vmap(jax.grad) clip + mean"])))
        notes.append(f"{title}: max rel. error of the norms vs vmap(grad) {err_n:.1e}; "
                     f"clipped mean vs vmap(grad) {err_c:.1e} (float32)")
        summary = {}
        for name, res in t.items():
            pair_ref = t["vmap(jax.grad) clip + mean"] if "clip" in name or "clipped" in name \
                else ref
            rows.append({"impl": f"{title.split(',')[0]}: {name}",
                         "time_s": {k: v for k, v in res.items() if k != "rounds"},
                         "rounds_s": res["rounds"], "per_s": 1.0 / res["median"],
                         "ratio_ref_over_this": ratio(pair_ref, res), "memory": mem[name]})
            summary[name] = {"time_median_s": res["median"], "temp": mem[name].get("temp")}
        notes.append(f"{title}: compiled temp memory " + ", ".join(
            f"{k} {v['temp'] / 2**20:.1f} MiB" for k, v in summary.items()))
        by_model[title.split(",")[0]] = summary
    return {"title": "12. per-example gradient norms and DP clipping vs vmap(grad)", "rows": rows,
            "by_model": by_model, "notes": notes}


def targets(result) -> list:
    """``(name, value, ok)``: fnnet's norms and clipped mean vs vmap(grad), time and memory."""
    out = []
    for model, s in result["by_model"].items():
        for ours, theirs, what in (("fnnet per_example_grad_norms", "vmap(jax.grad) norms",
                                    "per-example norm"),
                                   ("fnnet dp.clipped_grad", "vmap(jax.grad) clip + mean",
                                    "clipped mean")):
            if ours in s and theirs in s:
                t = s[ours]["time_median_s"] / s[theirs]["time_median_s"]
                m = s[ours]["temp"] / max(s[theirs]["temp"], 1)
                out.append((f"per-example {model}: {what} time / vmap(grad) < 1", t, t < 1.0))
                out.append((f"per-example {model}: {what} temp memory / vmap(grad) < 1", m,
                            m < 1.0))
    return out
