"""``python -m fnnet.launch -n N [--devices D] script.py args...``: N JAX processes here.

See :mod:`fnnet.distributed` (``fn.distributed.launch`` is the same from Python).
"""

from __future__ import annotations

import argparse
import sys

from fnnet import distributed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fnnet.launch", description=(
        "Start a script as N JAX processes on this machine (CPU devices), each told its "
        "rank through FNNET_* variables that fn.distributed.initialize() reads."))
    p.add_argument("-n", "--processes", type=int, default=2)
    p.add_argument("--devices", type=int, default=1, help="CPU devices per process")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before all are stopped")
    p.add_argument("script", help="the Python script")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    a = p.parse_args(argv)
    results = distributed.launch([a.script, *a.args], processes=a.processes,
                                 devices=a.devices, timeout=a.timeout)
    worst = 0
    for r in results:
        for line in r.stdout.splitlines():
            print(f"[{r.process_id}] {line}")
        for line in r.stderr.splitlines():
            print(f"[{r.process_id}] {line}", file=sys.stderr)
        if r.returncode != 0:
            print(f"[{r.process_id}] " + ("stopped by the launcher" if r.returncode is None
                                          else f"exit code {r.returncode}"), file=sys.stderr)
            worst = worst or (r.returncode if r.returncode else 1)
    return worst


if __name__ == "__main__":
    sys.exit(main())
