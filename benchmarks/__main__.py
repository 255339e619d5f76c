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


def targets(results: dict, quick: bool) -> list[dict]:
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
    if "mlp" in results:
        rows = rowmap(results["mlp"])
        share = rows["fnnet manual"]["peak_share_in_round"]
        c6 = rows["fnnet manual"]["peak_share"]
        add("mlp: fnnet manual >= 80% of matmul peak", share["median"], share["median"] >= 0.80,
            detail=f"matmul timed in the same rounds; per-round {share['min']:.3f}-"
                   f"{share['max']:.3f}; autodiff "
                   f"{rows['fnnet autodiff']['peak_share_in_round']['median']:.3f}; vs case 6's "
                   f"median peak {c6['median']:.3f}")
        torch_rows = [r for n, r in rows.items() if n.startswith("PyTorch")]
        if torch_rows:
            torch_row = min(torch_rows, key=lambda r: r["time_s"]["median"])
            q = torch_row["ratio_ref_over_this"]
            add("mlp: fnnet manual <= 0.45x PyTorch eager", q["median"], q["median"] <= 0.45,
                detail=f"vs the faster torch row ({torch_row['impl']}), per-round "
                       f"{q['min']:.3f}-{q['max']:.3f}")
        else:
            add("mlp: fnnet manual <= 0.45x PyTorch eager", None, False,
                detail="PyTorch not installed: not measured")
    if "xor" in results:
        rows = rowmap(results["xor"])
        fit = rows["fnnet fit (whole run compiled), manual"]
        add("xor: 10k-epoch fit <= 2.5 ms after compilation", fit["time_s"]["median"],
            fit["time_s"]["median"] <= 2.5e-3,
            detail=f"spread {fit['time_s']['min'] * 1e3:.2f}-{fit['time_s']['max'] * 1e3:.2f} ms")
        q = rows["NumPy from-scratch loop"]["ratio_ref_over_this"]
        add("xor: fit >= 50x faster than NumPy loop", 1 / q["median"], 1 / q["median"] >= 50,
            detail=f"per-round {1 / q['max']:.0f}x-{1 / q['min']:.0f}x")
        c = fit["trace_s"] + fit["compile_s"]
        add("xor: compile (trace + XLA) <= 150 ms", c, c <= 0.150,
            detail=f"trace {fit['trace_s'] * 1e3:.0f} ms + XLA {fit['compile_s'] * 1e3:.0f} ms")
    if "sweep" in results:
        q = results["sweep"]["sweep_over_one"]
        add("sweep: 100 seeds <= 4x one model", q["median"], q["median"] <= 4.0,
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
    results = {}
    def timed(fn_, *a, **k):
        t = time.perf_counter()
        out = fn_(*a, **k)
        out["wall_s"] = time.perf_counter() - t
        return out

    with jax.default_device(device):
        if "peak" in cases:
            results["peak"] = timed(C.case_matmul_peak, cfg, device)
            print_case(results["peak"], args.device == "gpu")
        if "xor" in cases:
            results["xor"] = timed(C.case_xor, cfg, device)
            print_case(results["xor"], False)
        mlp_cases = [(k, n, s, b) for k, n, s, b in (
            ("mlp", "2. MLP", cfg.mlp_sizes, cfg.mlp_batch),
            ("large", "3. large MLP", cfg.large_sizes, cfg.large_batch)) if k in cases]
        for dtype in cfg.dtypes:
            sfx = "" if dtype == "float32" else f"_{dtype}"
            for key, name, s, b in mlp_cases:
                results[key + sfx] = timed(
                    C.case_mlp, cfg, device, results["peak"], sizes=s, batch=b, dtype=dtype,
                    title=f"{name} {'-'.join(map(str, s))}: batch {b}, SGD step, {dtype}")
                print_case(results[key + sfx], args.device == "gpu")
        if "sweep" in cases:
            results["sweep"] = timed(C.case_sweep, cfg, device)
            print_case(results["sweep"], False)
        if "reuse" in cases:
            results["reuse"] = timed(C.case_reuse, cfg, device)
            print_case(results["reuse"], False)
        if "memory" in cases:
            mlps = [results[k] for k in results if k.startswith(("mlp", "large"))]
            results["memory"] = timed(C.case_memory, cfg, device, mlps)
            print_case(results["memory"], False)
        if "gpt" in cases or "attention" in cases:
            from . import transformer as TR
        for key, case_fn in (("gpt", "case_gpt"), ("attention", "case_attention")):
            if key in cases:
                results[key] = timed(getattr(TR, case_fn), cfg, device)
                print_case(results[key], False)
        if "lstm" in cases or "cnn1d" in cases:
            from . import sequence as SQ
        for key, case_fn in (("lstm", "case_lstm"), ("cnn1d", "case_cnn1d")):
            if key in cases:
                results[key] = timed(getattr(SQ, case_fn), cfg, device)
                print_case(results[key], False)
        if "per_example" in cases:
            from .per_example import case_per_example
            results["per_example"] = timed(case_per_example, cfg, device)
            print_case(results["per_example"], False)
        if "sharding" in cases:       # subprocesses with forced CPU devices
            from .sharding import case_sharding, print_sharding
            results["sharding"] = timed(case_sharding, cfg, device)
            print_sharding(results["sharding"])
        if "llama" in cases or "generate" in cases:
            from . import llama as LL
        for key, case_fn in (("llama", "case_llama"), ("generate", "case_generate")):
            if key in cases:
                results[key] = timed(getattr(LL, case_fn), cfg, device)
                print_case(results[key], False)
    ts = targets(results, args.quick)
    print_targets(ts)
    meta["load_average_end"] = load_average()
    meta["wall_s"] = time.perf_counter() - t0
    print(f"\nwall time {meta['wall_s']:.1f} s; load average at end: {meta['load_average_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "cases": results, "targets": ts}, f, indent=1, default=str)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
