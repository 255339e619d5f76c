"""``python -m benchmarks [--quick] [--device cpu|gpu] [--cases ...] [--json PATH]``.

Runs the cases, prints one table per case and the targets as PASS/MISS, and
writes everything measured (every round of every implementation) as JSON.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback

CASES = ("peak", "xor", "mlp", "large", "sweep", "memory", "gpt", "attention", "lstm", "cnn1d",
         "reuse", "per_example", "sharding", "llama", "generate")
ALIASES = {"6": "peak", "1": "xor", "2": "mlp", "3": "large", "4": "sweep", "5": "memory",
           "7": "gpt", "8": "attention", "9": "lstm", "10": "cnn1d", "11": "reuse",
           "12": "per_example", "13": "sharding", "14": "llama", "15": "generate",
           "matmul": "peak"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke run: small sizes, few repetitions (numbers "
                        "not meaningful, targets not judged)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--cases", default="all",
                   help="comma-separated subset of " + ",".join(CASES) + " (or 1-15); "
                        "default all")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="start no further case once S seconds have passed (the cases left "
                        "are listed as skipped; targets are judged on what ran)")
    args = p.parse_args(argv)
    try:
        args.cases = pick_cases(args.cases)
    except ValueError as err:
        p.error(f"argument --cases: {err}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        p.error(f"argument --json: the folder of {args.json!r} does not exist")
    return args


def pick_cases(spec: str) -> tuple:
    if spec == "all":
        return CASES
    chosen = []
    for name in spec.split(","):
        name = ALIASES.get(name.strip(), name.strip())
        if name not in CASES:
            raise ValueError(f"unknown case {name!r}; choose from {', '.join(CASES)} or 1-15")
        chosen.append(name)
    if "memory" in chosen:                # measured on the MLP cases' train steps
        for need in ("mlp", "large"):
            if need not in chosen:
                chosen.append(need)
    if {"mlp", "large"} & set(chosen) and "peak" not in chosen:
        chosen.insert(0, "peak")          # shares of peak need the peak
    return tuple(c for c in CASES if c in chosen)


def get_device(kind: str):
    import jax

    if kind == "gpu" and os.environ.get("FNNET_BENCH_GPU_ON_CPU") == "1":
        # a smoke test of the GPU configuration's code paths on a machine without one
        # (bfloat16 variants, GPU sizes in --quick, CUDA peers skipped); numbers meaningless
        return jax.devices("cpu")[0]
    try:
        return jax.devices(kind)[0]
    except RuntimeError as err:
        raise SystemExit(
            f"--device {kind}: JAX sees no {kind.upper()} ({err}).\n"
            "Install JAX with CUDA on a machine with an NVIDIA GPU and driver:\n"
            '    pip install -U "jax[cuda12]"\n'
            "then check with: python -c 'import jax; print(jax.devices())'")


# --- printing -----------------------------------------------------------------------

def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_rate(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


TIME_NOTES = (("trace_s", "trace"), ("compile_s", "XLA compile"),
              ("first_call_s", "first call (trace + compile + run)"),
              ("first_fit_call_s", "first fit() call of a fresh model"))


def print_case(case: dict, gpu: bool) -> None:
    print()
    print(f"## {case['title']}" + (f"   [{case['wall_s']:.1f} s]" if "wall_s" in case else ""))
    unit, scale = ("TFLOP/s", 1e-3) if gpu else ("GFLOP/s", 1.0)
    head = (f"| {'implementation':44} | {'time (median)':>13} | {'spread min-max':>21} | "
            f"{'per s':>9} | {unit:>8} | {'% peak':>6} | {'ref/this':>18} |")
    if case["title"].startswith("5."):
        print(f"| {'train step':60} | {'temp':>12} | {'argument':>12} | {'output':>12} | "
              f"{'peak':>12} |")
        print("|" + "-" * 62 + "|" + ("-" * 14 + "|") * 4)
        for r in case["rows"]:
            print(f"| {r['impl']:60} | {r.get('temp', 0):>12,} | {r.get('argument', 0):>12,} | "
                  f"{r.get('output', 0):>12,} | {r.get('peak', 0):>12,} |")
        for name, v in case["temp_ratio_manual_over_autodiff"].items():
            print(f"  temp manual/autodiff, {name}: {v:.3f}")
        return
    print(head)
    print("|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|")
    for r in case["rows"]:
        t = r["time_s"]
        spread = f"{fmt_time(t['min'])}-{fmt_time(t['max'])}"
        gf = fmt_rate(r["gflops"] * scale) if "gflops" in r else "-"
        share = (f"{100 * r['peak_share_in_round']['median']:.1f}"
                 if "peak_share_in_round" in r else "-")
        if "ratio_ref_over_this" in r:
            q = r["ratio_ref_over_this"]
            rat = f"{q['median']:.3f} [{q['min']:.2f}-{q['max']:.2f}]"
        else:
            rat = "-"
        print(f"| {r['impl'][:44]:44} | {fmt_time(t['median']):>13} | {spread:>21} | "
              f"{fmt_rate(r['per_s']):>9} | {gf:>8} | {share:>6} | {rat:>18} |")
    for r in case["rows"]:
        bits = [f"{label} {fmt_time(r[key])}" for key, label in TIME_NOTES if key in r]
        if "dots_in_hlo" in r:
            bits.append(f"{r['dots_in_hlo']} matmuls in compiled HLO")
        if "per_epoch_us" in r:
            bits.append(f"{r['per_epoch_us']:.3f} us/epoch")
        if bits:
            print(f"  {r['impl']}: " + ", ".join(bits))
    if "matmul_peak_in_rounds" in case:
        m = case["matmul_peak_in_rounds"]
        print(f"  % peak: share of the best-size matmul of case 6 timed INSIDE these rounds "
              f"(load-matched), median over rounds; it ran at {m['median'] * scale:,.1f} {unit} "
              f"[{m['min'] * scale:,.1f}-{m['max'] * scale:,.1f}]. Against case 6's own median "
              f"peak instead: " + ", ".join(
                  f"{r['impl']} {100 * r['peak_share']['median']:.1f}%"
                  for r in case["rows"] if "peak_share" in r))
        print(f"  FLOPs/step counted: {case['flops_per_step']:,}")
    if "manual_over_autodiff_paired" in case:
        q = case["manual_over_autodiff_paired"]
        print(f"  manual/autodiff from {q['n']} back-to-back pairs: median {q['median']:.3f}, "
              f"IQR {q['q1']:.3f}-{q['q3']:.3f}, min-max {q['min']:.3f}-{q['max']:.3f}")
    if "compile_manual_over_autodiff" in case:
        q = case["compile_manual_over_autodiff"]
        print(f"  compile time manual/autodiff ({q['xla']['n']} fresh compiles each, alternating "
              f"order): trace {q['trace']['median']:.3f}, XLA {q['xla']['median']:.3f}")
    if case.get("one_loop_kernel"):
        print("  epoch loop compiled as ONE XLA:CPU kernel: " + ", ".join(
            f"{m} {'yes' if k else 'NO'}" for m, k in case["one_loop_kernel"].items()))
    for key in ("max_loss_diff_fnnet_vs_numpy", "final_loss"):
        if key in case:
            print(f"  {key}: {case[key]:.3g}")
    for note in case.get("notes", []):
        print(f"  note: {note}")
    print("  ref/this: the first row's time divided by this row's, per round "
          "(median [min-max] over rounds)")


# --- targets ------------------------------------------------------------------------

def _verdict(ok: bool, near: bool = False) -> str:
    return "PASS" if ok else ("PASS (within noise)" if near else "MISS")


def targets(results: dict, quick: bool, gpu: bool = False) -> list[dict]:
    out = []

    def add(name, value, ok, near=False, detail=""):
        out.append({"target": name, "value": value, "verdict": _verdict(ok, near),
                    "detail": detail})

    def rowmap(case):
        return {r["impl"]: r for r in case["rows"]}

    # manual / autodiff <= 1.00 in every case (median of per-round ratios)
    for key, man, auto in (("xor", "fnnet fit (whole run compiled), manual", "fnnet fit, autodiff"),
                           ("mlp", "fnnet manual", "fnnet autodiff"),
                           ("large", "fnnet manual", "fnnet autodiff")):
        if key not in results:
            continue
        rows = rowmap(results[key])
        q = results[key]["manual_over_autodiff_paired"]
        r = rows[auto]["ratio_ref_over_this"]
        add(f"{key}: manual/autodiff <= 1.00", q["median"], q["median"] <= 1.0,
            near=q["median"] <= 1.03 and q["q1"] <= 1.0,
            detail=f"{q['n']} back-to-back pairs, IQR {q['q1']:.3f}-{q['q3']:.3f}; "
                   f"ratio of round medians {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]")
    # the share of the matmul peak: on a CPU the 784-512-512-10 step; on a GPU that step is
    # ~1 us of arithmetic behind ~100 us of launches at any speed, so the step that fills
    # the chip (the large MLP) carries the target there
    for key in ("large", "large_bfloat16") if gpu else ("mlp",):
        if key not in results:
            continue
        rows = rowmap(results[key])
        share = rows["fnnet manual"]["peak_share_in_round"]
        c6 = rows["fnnet manual"]["peak_share"]
        add(f"{key}: fnnet manual >= 85% of matmul peak", share["median"],
            share["median"] >= 0.85,
            detail=f"matmul timed in the same rounds; per-round {share['min']:.3f}-"
                   f"{share['max']:.3f}; autodiff "
                   f"{rows['fnnet autodiff']['peak_share_in_round']['median']:.3f}; vs case 6's "
                   f"median peak {c6['median']:.3f}")
    if "mlp" in results:
        rows = rowmap(results["mlp"])
        torch_rows = [r for n, r in rows.items() if n.startswith("PyTorch")]
        if torch_rows:
            torch_row = min(torch_rows, key=lambda r: r["time_s"]["median"])
            q = torch_row["ratio_ref_over_this"]
            add("mlp: fnnet manual <= 0.45x PyTorch eager", q["median"], q["median"] <= 0.45,
                detail=f"vs the faster torch row ({torch_row['impl']}), per-round "
                       f"{q['min']:.3f}-{q['max']:.3f}")
        else:
            add("mlp: fnnet manual <= 0.45x PyTorch eager", None, False,
                detail="no PyTorch row (not installed, or no CUDA in its build): not measured")
    if "xor" in results:
        rows = rowmap(results["xor"])
        fit = rows["fnnet fit (whole run compiled), manual"]
        add("xor: 10k-epoch fit <= 1.0 ms after compilation", fit["time_s"]["median"],
            fit["time_s"]["median"] <= 1.0e-3,
            detail=f"spread {fit['time_s']['min'] * 1e3:.2f}-{fit['time_s']['max'] * 1e3:.2f} ms")
        kernel = results["xor"].get("one_loop_kernel")
        if kernel is not None:     # XLA:CPU only: the guard of the 5-10x cliff
            add("xor: fit's epoch loop is ONE XLA:CPU kernel (manual and autodiff)",
                float(all(kernel.values())), all(kernel.values()),
                detail=", ".join(f"{m}: {'one kernel' if k else 'a loop of kernels'}"
                                 for m, k in kernel.items()))
        q = rows["NumPy from-scratch loop"]["ratio_ref_over_this"]
        add("xor: fit >= 50x faster than NumPy loop", 1 / q["median"], 1 / q["median"] >= 50,
            detail=f"per-round {1 / q['max']:.0f}x-{1 / q['min']:.0f}x")
        c = fit["trace_s"] + fit["compile_s"]
        add("xor: compile (trace + XLA) <= 150 ms", c, c <= 0.150,
            detail=f"trace {fit['trace_s'] * 1e3:.0f} ms + XLA {fit['compile_s'] * 1e3:.0f} ms")
    for key in ("xor", "mlp", "large", "gpt", "lstm", "cnn1d", "llama"):   # compile time
        q = results.get(key, {}).get("compile_manual_over_autodiff")
        if q is None:
            continue
        for kind in ("trace", "xla"):
            r = q[kind]
            add(f"{key}: {'trace' if kind == 'trace' else 'XLA compile'} time manual/autodiff "
                f"<= 1.00", r["median"], r["median"] <= 1.0,
                near=r["median"] <= 1.05 and r["min"] <= 1.0,
                detail=f"{r['n']} fresh compiles each, alternating; per-trial "
                       f"{r['min']:.3f}-{r['max']:.3f}")
    if "sweep" in results:
        q = results["sweep"]["sweep_over_one"]
        add("sweep: 100 seeds <= 8x one model", q["median"], q["median"] <= 8.0,
            detail=f"per-round {q['min']:.2f}-{q['max']:.2f}")
    if "reuse" in results:
        r = results["reuse"]
        add("reuse: fit with fresh objects <= 3x a cached run", r["worst_over_cached"],
            r["worst_over_cached"] <= 3.0 and r["compiles_during_timing"] == 0,
            detail=f"{r['compiles_during_timing']} compiles while timing")
    if "memory" in results:
        for name, v in results["memory"]["temp_ratio_manual_over_autodiff"].items():
            add(f"memory: manual temp <= autodiff temp ({name})", v, v <= 1.0)
    if "gpt" in results:
        g = results["gpt"]
        rows = rowmap(g)
        q = g["manual_over_autodiff_paired"]
        r = rows["fnnet autodiff"]["ratio_ref_over_this"]
        add("gpt: manual/autodiff <= 1.00", q["median"], q["median"] <= 1.0,
            near=q["median"] <= 1.03 and q["q1"] <= 1.0,
            detail=f"{q['n']} back-to-back pairs, IQR {q['q1']:.3f}-{q['q3']:.3f}; ratio of "
                   f"round medians {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]")
        add("gpt: manual temp memory <= autodiff", g["temp_ratio_manual_over_autodiff"],
            g["temp_ratio_manual_over_autodiff"] <= 1.0,
            detail=f"lean attention: {g['temp_ratio_lean_over_autodiff']:.3f}")
        torch_rows = [x for n, x in rows.items() if n.startswith("PyTorch")]
        if torch_rows:
            best = min(torch_rows, key=lambda x: x["time_s"]["median"])
            q = best["ratio_ref_over_this"]              # fnnet manual time / torch time
            add("gpt: fnnet manual faster than PyTorch eager", q["median"], q["median"] < 1.0,
                detail=f"fnnet time / torch time, vs the faster torch row ({best['impl']}); "
                       f"per-round {q['min']:.3f}-{q['max']:.3f}")
    if "attention" in results:
        by_len = results["attention"]["by_length"]
        T = 1024 if 1024 in by_len else max(by_len)
        v = by_len[T]["lean (manual)"]["temp_over_autodiff"]
        add(f"attention: lean temp <= 0.5x autodiff at T={T}", v, v <= 0.5,
            detail=", ".join(f"T={t}: {m['lean (manual)']['temp_over_autodiff']:.3f}"
                             for t, m in by_len.items()))
    for key in ("lstm", "cnn1d"):      # the sequence cases (benchmarks/sequence.py)
        if key not in results:
            continue
        g, rows = results[key], rowmap(results[key])
        q = g["manual_over_autodiff_paired"]
        add(f"{key}: manual/autodiff <= 1.00", q["median"], q["median"] <= 1.0,
            near=q["median"] <= 1.03 and q["q1"] <= 1.0,
            detail=f"{q['n']} back-to-back pairs, IQR {q['q1']:.3f}-{q['q3']:.3f}")
        v = g["temp_ratio_manual_over_autodiff"]
        add(f"{key}: manual temp memory <= autodiff", v, v <= 1.0)
        torch_rows = [x for n, x in rows.items() if n.startswith("PyTorch")]
        if torch_rows:
            best = min(torch_rows, key=lambda x: x["time_s"]["median"])
            q = best["ratio_ref_over_this"]
            # ratio_ref_over_this of a torch row is fnnet's time over torch's
            add(f"{key}: fnnet manual faster than PyTorch eager", q["median"],
                q["median"] < 1.0, detail=f"fnnet time / torch time, vs the faster torch row "
                                          f"({best['impl']}); per-round {q['min']:.3f}-"
                                          f"{q['max']:.3f}")
    if "per_example" in results:      # benchmarks/per_example.py
        from .per_example import targets as per_example_targets
        for name, v, ok in per_example_targets(results["per_example"]):
            add(name, v, ok)
    if "sharding" in results:         # benchmarks/sharding.py
        from .sharding import targets as sharding_targets
        for name, v, ok in sharding_targets(results["sharding"]):
            add(name, v, ok)
    if "llama" in results or "generate" in results:      # benchmarks/llama.py
        from .llama import targets as llama_targets
        for name, v, ok, near, detail in llama_targets(results):
            add(name, v, ok, near=near, detail=detail)
    if quick:
        for t in out:
            t["verdict"] = "n/a (quick)"
    return out


def print_targets(ts):
    print()
    print("## Targets")
    for t in ts:
        v = t["value"]
        v = "-" if v is None else (f"{v * 1e3:.3f} ms" if "ms" in t["target"] and v < 1
                                   else f"{v:.3f}")
        print(f"  {t['verdict']:>20}  {t['target']}: {v}  ({t['detail']})")


def add_peak_share(case: dict, peak: dict) -> None:
    """For a train-step case with XLA-counted FLOPs (``fnnet_steps``): each fnnet row's
    achieved rate and its share of the float32 matmul peak of case 6, as a note."""
    flops = {r["impl"]: r["memory"].get("flops") for r in case.get("rows", [])
             if isinstance(r.get("memory"), dict) and r["memory"].get("flops")}
    best = peak.get("peak_gflops", {}).get("float32")
    if not flops or not best:
        return
    bits = []
    for r in case["rows"]:
        if r["impl"] in flops:
            rate = flops[r["impl"]] / r["time_s"]["median"] / 1e9
            r["gflops"], r["peak_share_xla_flops"] = rate, rate / best
            bits.append(f"{r['impl']} {rate:,.0f} GFLOP/s = {100 * rate / best:.1f}%")
    case.setdefault("notes", []).append(
        "XLA-counted FLOPs per step over time, as a share of case 6's float32 matmul peak "
        f"({best:,.0f} GFLOP/s): " + ", ".join(bits))


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` whole or not at all (fnnet's one atomic writer)."""
    from fnnet.checkpoint import write_atomically

    def write(tmp):
        with open(tmp, "x") as f:
            json.dump(data, f, indent=1, default=str)

    write_atomically(path, write)


# --- main ---------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    cases = args.cases
    import jax

    from . import cases as C
    from .timing import cpu_model, load_average, versions

    device = get_device(args.device)
    cfg = C.Config(quick=args.quick, device=args.device, cases=cases)
    meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": str(device), "device_kind": getattr(device, "device_kind", ""),
            "nproc": os.cpu_count(), "cpu_model": cpu_model(), "versions": versions(),
            "load_average_start": load_average(), "quick": args.quick,
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(f"# fnnet benchmarks  {meta['date_utc']}")
    print(f"device: {meta['device']} {meta['device_kind']}; nproc {meta['nproc']}; "
          f"CPU {meta['cpu_model']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    print(f"load average at start: {meta['load_average_start']}"
          + ("   (QUICK MODE: smoke test, numbers not meaningful)" if args.quick else ""))
    t0 = time.perf_counter()
    results, skipped, failed = {}, [], {}
    gpu = args.device == "gpu"

    def run(key, case_fn, *a, printer=None, **k):
        """Run one case (unless ``--max-seconds`` is spent), print it (with ``printer``,
        default :func:`print_case`), keep its results."""
        if args.max_seconds is not None and time.perf_counter() - t0 > args.max_seconds:
            skipped.append(key)
            print(f"\n## {key}: skipped (--max-seconds {args.max_seconds:g} spent)")
            return
        t = time.perf_counter()
        try:
            out = case_fn(*a, **k)
        except Exception as err:      # one broken case must not cost the others' numbers
            failed[key] = f"{type(err).__name__}: {err}"
            print(f"\n## {key}: FAILED after {time.perf_counter() - t:.1f} s")
            traceback.print_exc()
            return
        out["wall_s"] = time.perf_counter() - t
        if "peak" in results:
            add_peak_share(out, results["peak"])
        results[key] = out
        if printer is not None:
            printer(out)
        else:
            print_case(out, gpu)
        if args.json:                 # after every case: a run killed later keeps these
            write_json(args.json, {"meta": meta, "cases": results, "partial": True})

    with jax.default_device(device):
        if "peak" in cases:
            run("peak", C.case_matmul_peak, cfg, device)
        if "xor" in cases:
            run("xor", C.case_xor, cfg, device)
        mlp_cases = [(k, n, s, b) for k, n, s, b in (
            ("mlp", "2. MLP", cfg.mlp_sizes, cfg.mlp_batch),
            ("large", "3. large MLP", cfg.large_sizes, cfg.large_batch)) if k in cases]
        for dtype in cfg.dtypes:
            sfx = "" if dtype == "float32" else f"_{dtype}"
            for key, name, s, b in mlp_cases:
                run(key + sfx, C.case_mlp, cfg, device, results.get("peak"), sizes=s, batch=b,
                    dtype=dtype, title=f"{name} {'-'.join(map(str, s))}: batch {b}, SGD step, "
                                       f"{dtype}")
        for key in ("sweep", "reuse"):
            if key in cases:
                run(key, getattr(C, f"case_{key}"), cfg, device)
        if "memory" in cases:
            mlps = [results[k] for k in results if k.startswith(("mlp", "large"))]
            run("memory", C.case_memory, cfg, device, mlps)
        if {"gpt", "attention"} & set(cases):
            from . import transformer as TR
        for key in ("gpt", "attention"):
            if key in cases:
                run(key, getattr(TR, f"case_{key}"), cfg, device)
        if {"lstm", "cnn1d"} & set(cases):
            from . import sequence as SQ
        for key in ("lstm", "cnn1d"):
            if key in cases:
                run(key, getattr(SQ, f"case_{key}"), cfg, device)
        if "per_example" in cases:
            from .per_example import case_per_example
            run("per_example", case_per_example, cfg, device)
        if "sharding" in cases:       # subprocesses with forced CPU devices
            from .sharding import case_sharding, print_sharding
            run("sharding", case_sharding, cfg, device, printer=print_sharding)
        if {"llama", "generate"} & set(cases):
            from . import llama as LL
        for key in ("llama", "generate"):
            if key in cases:
                run(key, getattr(LL, f"case_{key}"), cfg, device)
    meta["skipped_for_time"] = skipped
    meta["failed"] = failed
    ts = targets(results, args.quick, gpu)
    print_targets(ts)
    meta["load_average_end"] = load_average()
    meta["wall_s"] = time.perf_counter() - t0
    print(f"\nwall time {meta['wall_s']:.1f} s; load average at end: {meta['load_average_end']}")
    if args.json:
        write_json(args.json, {"meta": meta, "cases": results, "targets": ts})
        print(f"JSON written to {args.json}")
    if failed:
        print("FAILED cases: " + "; ".join(f"{k} ({v})" for k, v in failed.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
