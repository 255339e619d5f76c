"""The benchmark suite's smoke mode runs, covers every case and measures real times.

``python -m benchmarks --quick`` (small sizes, few repetitions) runs in a
subprocess, as a user would run it; the test checks the JSON it writes, not the
numbers (they are not meaningful in quick mode and targets are not judged).
"""

import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("peak", "xor", "mlp", "large", "sweep", "memory")


def _quick(tmp_path, *cases):
    out = tmp_path / "bench.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)]
        + (["--cases", ",".join(cases)] if cases else []),
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text()), elapsed


def _assert_rows(data, names):
    for name in names:
        rows = data["cases"][name]["rows"]
        assert rows, name
        for r in rows:
            if "time_s" in r:
                assert r["time_s"]["median"] > 0 and r["time_s"]["min"] > 0, (name, r["impl"])


@pytest.mark.slow   # ~12 s; the cases themselves are unit-tested above
def test_quick_benchmark_writes_every_core_case_with_positive_times(tmp_path):
    """The core cases (XOR, MLPs, sweep, memory, peak) in smoke mode: the default run."""
    proc, data, elapsed = _quick(tmp_path, *CASES)
    assert data["meta"]["quick"] is True
    for key in ("date_utc", "nproc", "cpu_model", "versions", "device"):
        assert data["meta"][key], key
    assert set(CASES) <= set(data["cases"]), sorted(data["cases"])
    for name in CASES:
        rows = data["cases"][name]["rows"]
        assert rows, name
        if name == "memory":
            assert all(r["temp"] >= 0 and r["argument"] > 0 for r in rows)
            continue
        for r in rows:
            assert r["time_s"]["median"] > 0 and r["time_s"]["min"] > 0, (name, r["impl"])
            assert r["per_s"] > 0
    impls = {r["impl"] for r in data["cases"]["mlp"]["rows"]}
    assert {"fnnet manual", "fnnet autodiff"} <= impls
    assert any(i.startswith("NumPy") for i in impls)
    assert any(t["target"].startswith("xor: 10k-epoch") for t in data["targets"])
    # the table went to stdout
    assert "## Targets" in proc.stdout and "## 1. XOR" in proc.stdout
    assert elapsed < 60, f"quick mode took {elapsed:.1f} s"


@pytest.mark.slow
def test_quick_benchmark_runs_every_case(tmp_path):
    """All cases (sequences, transformers, per-example, compile reuse too) in smoke mode."""
    proc, data, _ = _quick(tmp_path)
    assert set(CASES) < set(data["cases"]), sorted(data["cases"])
    _assert_rows(data, data["cases"])
    assert "## Targets" in proc.stdout


def test_case_selection_pulls_in_what_a_case_needs_and_rejects_unknown_names(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks.__main__ import parse_args, pick_cases

    assert pick_cases("memory") == ("peak", "mlp", "large", "memory")  # memory reads mlp/large
    assert pick_cases("1") == ("xor",)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--cases", "bogus"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown case 'bogus'" in proc.stderr
    assert parse_args(["--cases", "xor"]).cases == ("xor",)
