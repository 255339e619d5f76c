"""Timing helpers: interleaved rounds, medians, spreads, machine facts.

Every implementation of a case is timed in the same *rounds*: round r times
``reps`` calls of A, then of B, then of C (the order rotates every round), and
keeps each implementation's median call time for that round. The reported time
is the median of the round medians; the spread is their min and max. Ratios
(``A/B``) are formed per round and summarised the same way, so a burst of load
from another process moves both sides of a ratio together.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import jax
import numpy as np


def block(out):
    """Wait for every array in ``out`` (a pytree); returns ``out``."""
    return jax.block_until_ready(out)


def timed_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summary(values) -> dict:
    v = [float(x) for x in values]
    q1, q3 = (np.percentile(v, [25, 75]) if len(v) > 1 else (v[0], v[0]))
    return {"median": statistics.median(v), "min": min(v), "max": max(v),
            "q1": float(q1), "q3": float(q3), "n": len(v)}


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, reps,
                warmup: int = 1, pause: float = 0.0) -> dict[str, dict]:
    """Time each ``fns[name]()`` (which must block until done) in interleaved rounds.

    ``reps`` is the number of calls per round: an int, or a dict per name.
    ``pause`` seconds of sleep precede each implementation's calls in a round:
    thread pools that spin-wait after their work (OpenBLAS under NumPy, OpenMP
    under PyTorch, XLA's) would otherwise steal the 2 cores from the next one.

    Returns ``{name: {"median", "min", "max", "q1", "q3", "n", "rounds": [...]}}``
    over the per-round medians, in seconds per call.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    per_round = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            f = fns[name]
            if pause:
                time.sleep(pause)
            n = reps[name] if isinstance(reps, dict) else reps
            per_round[name].append(statistics.median(timed_call(f) for _ in range(n)))
    return {name: {**summary(per_round[name]), "rounds": per_round[name]} for name in names}


def compile_times(programs: dict[str, Callable[[], tuple]], *, trials: int) -> dict:
    """Trace and XLA compile time of each program, fresh: ``{name: {"trace_s", "compile_s",
    "trace_trials", "compile_trials"}}`` (medians over ``trials``, in seconds).

    ``programs[name]()`` returns ``(jitted, args)`` with a NEW ``jax.jit`` object each
    call (a fresh trace and a fresh XLA compile; JAX's own helpers stay warm, as in a
    process that has run anything before). Every trial lowers (trace) and compiles
    (XLA) each program once, the order rotating from trial to trial, after one untimed
    compile (the first in a process also warms XLA up). Ratios of two programs are
    formed per trial (:func:`compile_ratios`), so a burst of load moves both sides.
    """
    names = list(programs)
    out = {name: {"trace_trials": [], "compile_trials": []} for name in names}
    jitted, args = programs[names[0]]()        # untimed: XLA's one-time warm-up
    jitted.lower(*args).compile()
    for t in range(trials):
        for name in names[t % len(names):] + names[:t % len(names)]:
            jitted, args = programs[name]()
            t0 = time.perf_counter()
            lowered = jitted.lower(*args)
            t1 = time.perf_counter()
            lowered.compile()
            out[name]["trace_trials"].append(t1 - t0)
            out[name]["compile_trials"].append(time.perf_counter() - t1)
    for v in out.values():
        v["trace_s"] = statistics.median(v["trace_trials"])
        v["compile_s"] = statistics.median(v["compile_trials"])
    return out


def compile_ratios(times: dict, a: str, b: str) -> dict:
    """Per-trial ``a/b`` of :func:`compile_times` results: ``{"trace": summary, "xla":
    summary}``."""
    return {kind: summary([x / y for x, y in zip(times[a][f"{key}_trials"],
                                                 times[b][f"{key}_trials"])])
            for kind, key in (("trace", "trace"), ("xla", "compile"))}


def ratio(a: dict, b: dict) -> dict:
    """Per-round ratio ``a/b`` of two :func:`interleaved` results, summarised."""
    return summary([x / y for x, y in zip(a["rounds"], b["rounds"])])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions() -> dict:
    import jaxlib

    out = {"python": platform.python_version(), "jax": jax.__version__,
           "jaxlib": jaxlib.__version__, "numpy": np.__version__}
    try:
        import torch  # noqa: F401  (optional peer)

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def paired(fa: Callable[[], object], fb: Callable[[], object], *, pairs: int) -> dict:
    """Ratio ``time(fa) / time(fb)`` from back-to-back pairs (order alternating AB, BA).

    Both calls of a pair run milliseconds apart, under the same background load,
    so the per-pair ratio is far less noisy than a ratio of separate medians on a
    shared machine. Returns the summary of the per-pair ratios (plus ``a_s``/``b_s``,
    the median times).
    """
    fa(), fb()
    ratios, ta, tb = [], [], []
    for i in range(pairs):
        if i % 2:
            b, a = timed_call(fb), timed_call(fa)
        else:
            a, b = timed_call(fa), timed_call(fb)
        ratios.append(a / b)
        ta.append(a)
        tb.append(b)
    return {**summary(ratios), "a_s": statistics.median(ta), "b_s": statistics.median(tb)}


def step_rows(times: dict, memory: dict, first_loss: dict, notes: list, *,
              per_example: float | None = None, compile_info: dict | None = None
              ) -> tuple[list, dict]:
    """Result rows of a train-step case (times relative to ``"fnnet manual"``), and the
    compiled temp memory per implementation; appends the memory and first-loss notes.
    ``per_example``: items per step (e.g. tokens), reported as ``tokens_per_s``;
    ``compile_info``: :func:`compile_times` per row name (trace and XLA compile)."""
    ref = times["fnnet manual"]
    rows = []
    for name, res in times.items():
        r = {"impl": name, "time_s": {k: v for k, v in res.items() if k != "rounds"},
             "rounds_s": res["rounds"], "per_s": 1.0 / res["median"],
             "ratio_ref_over_this": ratio(ref, res)}
        if per_example is not None:
            r["tokens_per_s"] = per_example / res["median"]
        if name in memory:
            r["memory"] = memory[name]
        if compile_info and name in compile_info:
            r["trace_s"] = compile_info[name]["trace_s"]
            r["compile_s"] = compile_info[name]["compile_s"]
        rows.append(r)
    temp = {k: v["temp"] for k, v in memory.items()}
    notes.append("compiled temp memory: " + ", ".join(f"{k} {v / 2**20:.1f} MiB"
                                                       for k, v in temp.items()))
    notes.append("loss at the first step (same weights): " + ", ".join(
        f"{k} {v:.6f}" for k, v in first_loss.items()))
    return rows, temp
