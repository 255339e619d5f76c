"""Several JAX processes on localhost (``fn.distributed.launch``, CPU collectives): each
process passes its slice of the batch, and training equals one process; the processes
write one sharded checkpoint together. The launcher stops every process it started when
one fails or the time runs out."""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

SCRIPT = """
import json, os, sys
import fnnet as fn
assert fn.distributed.initialize()          # before anything starts JAX's backend
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

out_dir, full = sys.argv[1], sys.argv[2] == "full"
pid, n = jax.process_index(), jax.process_count()
devs = np.array(jax.devices())                      # every process's devices
mesh = Mesh(devs, ("data",))
net = fn.serial(fn.Dense(64), fn.Tanh, fn.Dense(32), fn.Tanh, fn.Dense(1))
loss, opt = fn.losses.mean_squared_error, fn.optim.adam(1e-2)
data = fn.load(os.path.join(out_dir, "data.npz"))   # the test's x, y and initial params
x, y, p0 = data["x"], data["y"], data["p0"]
policy = fn.sharding.FSDP(min_size=64)
b = x.shape[0] // n                                 # this process's slice of the batch
xg, yg = fn.sharding.global_batch(mesh, (x[pid * b:(pid + 1) * b], y[pid * b:(pid + 1) * b]))
step = fn.train_step(net, loss, opt, mesh=mesh, sharding=policy)
p, s = p0, opt.init(p0)
losses = []
for _ in range(3):
    p, s, v = step(p, s, xg, yg)
    losses.append(float(v))
fn.sharding.save(os.path.join(out_dir, "ckpt"), {"params": p, "opt_state": s})
gather = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, P()))   # to every process
res = {"pid": pid, "devices": len(devs), "local": jax.local_device_count(), "losses": losses,
       "spec": str(p[0]["w"].sharding.spec)}
if full:
    like = {"params": p0, "opt_state": opt.init(p0)}
    mesh2 = Mesh(devs.reshape(2, -1), ("data", "model"))
    back = fn.sharding.load(os.path.join(out_dir, "ckpt"), like,
                            fn.sharding.shardings(mesh2, like, "tensor"))
    host = lambda t: [np.asarray(a).tobytes() for a in jax.tree.leaves(gather(t))]
    res["reload_equal"] = host(back) == host({"params": p, "opt_state": s})
    res["reload_spec"] = str(back["params"][0]["w"].sharding.spec)
    tp = fn.train_step(net, loss, opt, mesh=mesh2, sharding="tensor")
    q, t = p0, opt.init(p0)
    xt, yt = fn.sharding.global_batch(mesh2, (x[pid * b:(pid + 1) * b], y[pid * b:(pid + 1) * b]),
                                      "tensor")
    res["tp_losses"] = [float(tp(q, t, xt, yt)[2])]
    res["fit_losses"] = [float(v) for v in fn.fit(net, loss, opt, p0, xg, yg, epochs=3,
                                                  mesh=mesh, sharding=policy)[2]["loss"]]
full_params = [np.asarray(a) for a in jax.tree.leaves(gather(p))]   # a collective: all call it
if pid == 0:
    np.savez(os.path.join(out_dir, "params.npz"), *full_params)
print("RESULT" + json.dumps(res))
"""


def _launch(tmp_path, what, data, timeout=120):
    fn.save(tmp_path / "data.npz", data)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    t0 = time.perf_counter()
    results = fn.distributed.launch([str(script), str(tmp_path), what], processes=2, devices=2,
                                    timeout=timeout)
    for r in results:
        assert r.returncode == 0, (r.process_id, r.returncode, r.stderr[-3000:])
    lines = [[l for l in r.stdout.splitlines() if l.startswith("RESULT")][0] for r in results]
    return [json.loads(l[len("RESULT"):]) for l in lines], time.perf_counter() - t0


@pytest.fixture(scope="module")
def reference():
    """The data, and the same three Adam steps in this (one-device) process."""
    net = fn.serial(fn.Dense(64), fn.Tanh, fn.Dense(32), fn.Tanh, fn.Dense(1))
    loss, opt = fn.losses.mean_squared_error, fn.optim.adam(1e-2)
    x = jax.random.normal(jax.random.key(1), (16, 8))
    y = jnp.sin(x[:, :1] * x[:, 1:2])
    p = net.init(jax.random.key(0), (8,))
    data = {"x": x, "y": y, "p0": p}
    step, s, losses = fn.train_step(net, loss, opt), opt.init(p), []
    for _ in range(3):
        p, s, v = step(p, s, x, y)
        losses.append(float(v))
    return p, s, losses, data


def test_two_processes_with_their_slices_of_the_batch_equal_one_process(tmp_path, reference):
    res, _ = _launch(tmp_path, "quick", reference[3])
    p, _, losses, _ = reference
    for r in res:
        assert r["devices"] == 4 and r["local"] == 2, r      # 2 processes x 2 CPU devices
        assert r["spec"] == "P(None, 'data')", r              # FSDP over all 4 devices
        np.testing.assert_allclose(r["losses"], losses, rtol=1e-5, atol=1e-6)
    with np.load(tmp_path / "params.npz") as z:
        got = [z[f"arr_{i}"] for i in range(len(z.files))]
    for a, b in zip(got, jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    files = sorted(os.listdir(tmp_path / "ckpt"))             # one description, two writers
    assert files[0] == "description.npz" and [f[-10:] for f in files[1:]] == [
        "0-of-2.npz", "1-of-2.npz"], files
    like = {"params": reference[0], "opt_state": reference[1]}
    with pytest.raises(fn.checkpoint.CheckpointError,
                       match="was written by 2 processes and is being loaded by 1"):
        fn.sharding.load(tmp_path / "ckpt", like)


@pytest.mark.slow
def test_two_processes_reload_onto_another_mesh_train_tensor_parallel_and_fit(tmp_path,
                                                                              reference):
    res, _ = _launch(tmp_path, "full", reference[3], timeout=240)
    losses = reference[2]
    for r in res:
        assert r["reload_equal"] and r["reload_spec"] == "P(None, 'model')", r
        np.testing.assert_allclose(r["tp_losses"], losses[:1], rtol=1e-5)
        np.testing.assert_allclose(r["fit_losses"], losses, rtol=1e-5, atol=1e-6)


FAIL = """
import os, sys, time
if os.environ["FNNET_PROCESS_ID"] == "1":
    sys.exit(3)                    # one process fails at once ...
time.sleep(60)                     # ... while its peer would wait for it
"""


def test_the_launcher_stops_every_process_when_one_fails_or_time_runs_out(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(FAIL)
    t0 = time.perf_counter()
    res = fn.distributed.launch([str(script)], processes=3, timeout=30)
    assert time.perf_counter() - t0 < 10
    assert [r.returncode for r in res] == [None, 3, None]     # None: stopped by the launcher
    script.write_text("import time; time.sleep(60)")
    t0 = time.perf_counter()
    res = fn.distributed.launch([str(script)], processes=2, timeout=1)
    assert time.perf_counter() - t0 < 8 and [r.returncode for r in res] == [None, None]
    with pytest.raises(ValueError, match="launch: processes must be a positive int"):
        fn.distributed.launch([str(script)], processes=0)


def test_initialize_is_a_no_op_outside_the_launcher(monkeypatch):
    for var in fn.distributed.ENV:
        monkeypatch.delenv(var, raising=False)
    assert fn.distributed.initialize() is False
    assert sys.modules["jax"].process_count() == 1
