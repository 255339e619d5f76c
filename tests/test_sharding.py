"""Data parallelism on 4 fake CPU devices, in a subprocess (XLA_FLAGS must be set
before JAX starts): mesh training must equal single-device training."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import fnnet as fn

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    import fnnet as fn

    assert len(jax.devices()) == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    net = fn.serial(fn.Dense(8), fn.Tanh, fn.Dense(1))
    loss = fn.losses.sigmoid_binary_cross_entropy
    x = jax.random.normal(jax.random.key(1), (64, 3))
    y = (x[:, :1] * x[:, 1:2] > 0).astype(jnp.float32)
    p0 = net.init(jax.random.key(0), (3,))
    opt = fn.optim.adam(0.01)

    def maxdiff(a, b):
        return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                   for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    out = {}
    cases = {"full": {},
             "minibatch": dict(batch_size=16, key=jax.random.key(2), validation=(x[:8], y[:8]))}
    for name, kw in cases.items():
        single = fn.fit(net, loss, opt, p0, x, y, epochs=30, **kw)
        multi = fn.fit(net, loss, opt, p0, x, y, epochs=30, mesh=mesh, **kw)
        out[name] = {"params": maxdiff(single[0], multi[0]),
                     "loss": maxdiff(single[2]["loss"], multi[2]["loss"]),
                     "x_devices": len(multi[0][0]["w"].sharding.device_set)}
    step1, step4 = fn.train_step(net, loss, opt), fn.train_step(net, loss, opt, mesh=mesh)
    s1 = s4 = opt.init(p0); a = b = p0
    for _ in range(5):
        a, s1, v1 = step1(a, s1, x, y)
        b, s4, v4 = step4(b, s4, x, y)
    out["train_step"] = {"params": maxdiff(a, b), "loss": abs(float(v1) - float(v4))}
    try:
        step4(b, s4, x[:62], y[:62])
    except ValueError as err:
        out["error"] = str(err)
    try:
        fn.fit(net, loss, opt, p0, x[:62], y[:62], epochs=2, batch_size=6, key=jax.random.key(0),
               mesh=mesh)
    except ValueError as err:
        out["fit_error"] = str(err)
    # layer state: batch statistics are global over the whole sharded batch; and a data set
    # (62) that does not split evenly over the devices trains in minibatches (16) that do.
    # SGD, not Adam: the bias before BatchNorm has a zero gradient up to rounding, which
    # Adam's first step g / |g| turns into +-lr, differently for every summation order
    opt = fn.optim.sgd(0.1)
    bn = fn.serial(fn.Dense(8), fn.BatchNorm(), fn.Tanh, fn.Dense(1))
    pb = bn.init(jax.random.key(0), (3,))
    sb = fn.init_state(bn, pb)
    kw = dict(epochs=5, batch_size=16, key=jax.random.key(2), state=sb)
    single = fn.fit(bn, loss, opt, pb, x[:62], y[:62], **kw)
    multi = fn.fit(bn, loss, opt, pb, x[:62], y[:62], mesh=mesh, **kw)
    out["state"] = {"params": maxdiff(single[0], multi[0]),
                    "loss": maxdiff(single[2]["loss"], multi[2]["loss"]),
                    "state": maxdiff(single[3], multi[3]), "moved": maxdiff(single[3], sb)}
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][0]
    return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("case", ["full", "minibatch", "train_step"])
def test_mesh_training_equals_single_device(result, case):
    r = result[case]
    assert r["params"] < 1e-5 and r["loss"] < 1e-5, r
    if "x_devices" in r:
        assert r["x_devices"] == 4      # params replicated over the whole mesh


def test_uneven_batch_is_a_clear_error(result):
    assert "62 examples does not split evenly over the 4 devices" in result["error"]


def test_mesh_must_be_a_mesh():
    net = fn.serial(fn.Dense(1))
    with pytest.raises(TypeError, match="fit: mesh must be a jax.sharding.Mesh"):
        fn.fit(net, fn.losses.mean_squared_error, fn.optim.sgd(0.1), net.init(jax.random.key(0), (2,)),
               jnp.zeros((4, 2)), jnp.zeros((4, 1)), epochs=2, mesh="data")


def test_mesh_minibatch_error_names_the_batch_size(result):
    assert "fit: the batch_size of 6 examples does not split evenly over the 4 devices" in \
        result["fit_error"]


def test_mesh_with_layer_state_and_uneven_data_equals_single_device(result):
    r = result["state"]    # global batch statistics: the running stats equal one device's
    assert r["params"] < 1e-5 and r["loss"] < 1e-5 and r["state"] < 1e-5, r
    assert r["moved"] > 1e-3, r
