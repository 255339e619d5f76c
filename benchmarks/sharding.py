"""13. Sharded training on 4 and 8 forced CPU devices: equal to one device, on ~1/N memory.

A GPT with the lean (FlashAttention-style) attention, trained two steps of SGD with
momentum (params + one moment tree) by ``fn.train_step`` under every policy, each in
a subprocess with ``--xla_force_host_platform_device_count=N``. Per policy:

* ``bytes/device``: the params and optimizer state one device holds after the steps
  (the sizes of its addressable shards; the most any device holds), and that over the
  replicated run's;
* XLA's memory analysis of the compiled step per device (``argument``: params, state
  and batch in; ``temp``: scratch, e.g. weights gathered for a layer);
* the largest difference of the params from the single-device run, and of the loss.

Forced host devices share the machine's cores, so no time is reported: the case
proves placement and equality, not speed.

``python -m benchmarks --cases sharding`` (or ``python -m benchmarks.sharding``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

DEVICES = (4, 8)


def sizes(quick: bool) -> dict:
    if quick:
        return dict(vocab=64, T=16, d_model=32, num_heads=4, num_layers=2, block_size=8,
                    batch=16)
    return dict(vocab=512, T=64, d_model=256, num_heads=8, num_layers=4, block_size=16,
                batch=16)


def worker(quick: bool) -> dict:
    """Runs inside the subprocess (its device count set by XLA_FLAGS)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    import fnnet as fn

    from .cases import memory

    n = len(jax.devices())
    devs = np.array(jax.devices())
    meshes = {"data": Mesh(devs, ("data",)),
              "data x model": Mesh(devs.reshape(n // 2, 2), ("data", "model"))}
    z = sizes(quick)
    net = fn.models.gpt(z["vocab"], z["T"], d_model=z["d_model"], num_heads=z["num_heads"],
                        num_layers=z["num_layers"], memory="lean", block_size=z["block_size"])
    p0 = net.init(jax.random.key(0), (z["T"],))
    ids = jax.random.randint(jax.random.key(1), (z["batch"], z["T"] + 1), 0, z["vocab"])
    x, y = ids[:, :-1], ids[:, 1:]
    opt, loss = fn.optim.sgd(0.1, momentum=0.9), fn.losses.softmax_cross_entropy

    def run(**kw):
        step = fn.train_step(net, loss, opt, **kw)
        compiled = step.lower(p0, opt.init(p0), x, y).compile()
        p, s = p0, opt.init(p0)
        for _ in range(2):
            p, s, v = step(p, s, x, y)
        return p, s, float(v), memory(compiled)

    ref = run()
    rows = [{"policy": "one device", "mesh": "-", "bytes": fn.sharding.device_bytes(ref[:2]),
             **ref[3], "params_diff": 0.0, "loss_diff": 0.0}]
    for policy, mesh in (("replicated", "data"), ("fsdp", "data"), ("tensor", "data x model"),
                         ("tensor+fsdp", "data x model")):
        sharding = fn.sharding.TensorParallel(fsdp=True) if policy == "tensor+fsdp" else policy
        p, s, v, mem = run(mesh=meshes[mesh], sharding=sharding)
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref[0])))
        shape = "x".join(map(str, meshes[mesh].devices.shape))
        rows.append({"policy": policy, "mesh": f"{mesh} ({shape})",
                     "bytes": fn.sharding.device_bytes((p, s)), **mem, "params_diff": diff,
                     "loss_diff": abs(v - ref[2])})
    replicated = rows[1]["bytes"]
    for r in rows:
        r["over_replicated"] = r["bytes"] / replicated
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(p0))
    return {"devices": n, "rows": rows, "params": n_params, "sizes": z}


def case_sharding(cfg, device=None) -> dict:
    """Run the worker once per device count; collect its rows."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = []
    for n in DEVICES:
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                   PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.sharding", "--worker"]
                              + (["--quick"] if cfg.quick else []), cwd=root, env=env,
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"sharding worker ({n} devices) failed:\n{proc.stderr[-3000:]}")
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
        runs.append(json.loads(line[len("RESULT"):]))
    z = runs[0]["sizes"]
    title = (f"13. sharded GPT (lean attention), {runs[0]['params']:,} params, d={z['d_model']}, "
             f"{z['num_layers']} layers, T={z['T']}, batch {z['batch']}: 2 SGD-momentum steps")
    return {"title": title, "runs": runs, "rows": [r for run in runs for r in run["rows"]]}


def print_sharding(case: dict) -> None:
    print()
    print(f"## {case['title']}" + (f"   [{case['wall_s']:.1f} s]" if "wall_s" in case else ""))
    print(f"| {'N':>2} | {'policy':12} | {'mesh':18} | {'params+opt bytes/device':>23} | "
          f"{'/ replicated':>12} | {'XLA argument':>12} | {'XLA temp':>10} | "
          f"{'max |dparams|':>13} | {'|dloss|':>8} |")
    print("|" + "|".join("-" * w for w in (4, 14, 20, 25, 14, 14, 12, 15, 10)) + "|")
    for run in case["runs"]:
        for r in run["rows"]:
            print(f"| {run['devices']:>2} | {r['policy']:12} | {r['mesh']:18} | "
                  f"{r['bytes']:>23,} | {r['over_replicated']:>12.3f} | "
                  f"{r.get('argument', 0):>12,} | {r.get('temp', 0):>10,} | "
                  f"{r['params_diff']:>13.1e} | {r['loss_diff']:>8.1e} |")


def targets(case: dict):
    """``(name, value, ok)``: FSDP holds <= 1.25/N per device; every policy equals one device."""
    out = []
    for run in case["runs"]:
        n = run["devices"]
        rows = {r["policy"]: r for r in run["rows"]}
        v = rows["fsdp"]["over_replicated"]
        out.append((f"sharding: fsdp bytes/device <= 1.25/N (N={n})", v, v <= 1.25 / n))
        worst = max(r["params_diff"] for r in run["rows"])
        out.append((f"sharding: every policy within 1e-5 of one device (N={n})", worst,
                    worst <= 1e-5))
    return out


if __name__ == "__main__":
    if "--worker" in sys.argv:
        print("RESULT" + json.dumps(worker("--quick" in sys.argv)))
    else:
        from .cases import Config

        quick = "--quick" in sys.argv
        case = case_sharding(Config(quick=quick, device="cpu", cases=("sharding",)))
        print_sharding(case)
        for name, v, ok in targets(case):
            print(f"  {'PASS' if ok else 'MISS':>5}  {name}: {v:.3g}")
