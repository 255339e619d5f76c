"""Several processes on one machine: a launcher, and ``initialize`` for the scripts it starts.

JAX's multi-process runtime (``jax.distributed``) is the engine: after
``jax.distributed.initialize`` every process sees every process's devices in
``jax.devices()``, a ``Mesh`` spans them all, and one ``jax.jit`` program runs in
every process, each feeding its own devices (CPU collectives go through Gloo:
``jax_cpu_collectives_implementation="gloo"``, which :func:`initialize` sets). fnnet adds only a way to start N
such processes on this machine, to try multi-host code without a cluster::

    python -m fnnet.launch -n 2 --devices 2 train.py --my-flag
    # or from Python: fn.distributed.launch(["train.py", "--my-flag"], processes=2, devices=2)

and in ``train.py``::

    import fnnet as fn
    fn.distributed.initialize()          # no-op when not started by the launcher
    mesh = Mesh(np.array(jax.devices()), ("data",))          # every process's devices
    x, y = fn.sharding.global_batch(mesh, (x_local, y_local))  # this process's slice
    step = fn.train_step(net, loss, opt, mesh=mesh, sharding="fsdp")

The launcher gives each process ``FNNET_COORDINATOR_ADDRESS`` (a free localhost
port), ``FNNET_NUM_PROCESSES`` and ``FNNET_PROCESS_ID``, ``JAX_PLATFORMS=cpu`` and
``--devices`` CPU devices, waits for them with a time limit, and kills every
process it started if one fails or the time runs out, so that no process is left
waiting for a peer that died. On a real cluster, call ``jax.distributed.initialize()``
yourself (it reads SLURM, Open MPI, Kubernetes, TPU pods ...).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

__all__ = ["initialize", "launch", "ProcessResult"]

ENV = ("FNNET_COORDINATOR_ADDRESS", "FNNET_NUM_PROCESSES", "FNNET_PROCESS_ID")


def initialize() -> bool:
    """``jax.distributed.initialize`` from the launcher's environment variables; returns
    True if it did, False (and does nothing) when they are not set."""
    if not all(v in os.environ for v in ENV):
        return False
    import jax

    # CPU collectives across processes: Gloo (the default of recent JAX, 0.10 here;
    # older versions name the option differently or default to none)
    for option, value in (("jax_cpu_collectives_implementation", "gloo"),
                          ("jax_cpu_enable_gloo_collectives", True)):
        if option in jax.config.values:
            jax.config.update(option, value)
            break
    jax.distributed.initialize(coordinator_address=os.environ[ENV[0]],
                               num_processes=int(os.environ[ENV[1]]),
                               process_id=int(os.environ[ENV[2]]))
    return True


class ProcessResult(NamedTuple):
    process_id: int
    returncode: int | None      # None: killed by the launcher (a peer failed, or timeout)
    stdout: str
    stderr: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(argv, *, processes: int = 2, devices: int = 1, timeout: float = 120.0,
           env=None, cwd=None) -> list[ProcessResult]:
    """Run ``python *argv`` as ``processes`` processes on localhost, each with ``devices``
    CPU devices; return each one's exit code and output (in process order).

    Stops every process this call started (SIGTERM, then SIGKILL) when one exits with an
    error or ``timeout`` seconds pass; a process stopped that way has ``returncode``
    None. Never raises for a failing child: inspect the results.
    """
    for what, v in (("processes", processes), ("devices", devices)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"launch: {what} must be a positive int, got {v!r}")
    base = dict(os.environ if env is None else env)
    base.update(JAX_PLATFORMS="cpu", FNNET_COORDINATOR_ADDRESS=f"localhost:{_free_port()}",
                FNNET_NUM_PROCESSES=str(processes),
                XLA_FLAGS=(base.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count={devices}").strip())
    procs, logs = [], []
    try:
        for i in range(processes):
            files = (tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+"))
            logs.append(files)
            procs.append(subprocess.Popen([sys.executable, *argv], cwd=cwd, text=True,
                                          env={**base, "FNNET_PROCESS_ID": str(i)},
                                          stdout=files[0], stderr=files[1],
                                          start_new_session=True))
        deadline = time.monotonic() + timeout
        killed = set()
        while any(p.poll() is None for p in procs):
            failed = any(p.poll() not in (None, 0) for p in procs)
            if failed or time.monotonic() > deadline:
                killed = {i for i, p in enumerate(procs) if p.poll() is None}
                _stop(procs)
                break
            time.sleep(0.05)
        results = []
        for i, (p, (out, err)) in enumerate(zip(procs, logs)):
            out.seek(0)
            err.seek(0)
            results.append(ProcessResult(i, None if i in killed else p.returncode,
                                         out.read(), err.read()))
        return results
    finally:
        _stop(procs)
        for out, err in logs:
            out.close()
            err.close()


def _stop(procs):
    """SIGTERM to each still running process (its own session: children too), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        end = time.monotonic() + wait
        while any(p.poll() is None for p in alive) and time.monotonic() < end:
            time.sleep(0.02)
