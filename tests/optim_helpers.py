"""Shared harness for the optimizer tests: run an fnnet optimizer and a NumPy
float64 reference on the same problem and return both trajectories.

The problem is a noisy quadratic, ``g_t = A (w_t - w*) + noise_t``, on a params
tree of two leaves; the noise is drawn up front so both sides see the same
gradients at the same params. It is contractive for the learning rates used,
so float32 rounding does not grow over the steps.
"""

import jax
import jax.numpy as jnp
import numpy as np

import fnnet as fn

STEPS = 50
SHAPES = {"w": (3, 2), "b": (2,)}


def problem(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    w0 = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    target = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    curv = {k: rng.uniform(0.5, 2.0, size=s) for k, s in SHAPES.items()}
    noise = [{k: 0.3 * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(steps)]

    def grad(w, t):
        return {k: curv[k] * (w[k] - target[k]) + noise[t][k] for k in SHAPES}

    return w0, grad


def run_fnnet(opt, seed=0, steps=STEPS):
    """Trajectory ``[w_1, ..., w_steps]`` of ``opt`` in float32, each step jitted."""
    w0, grad = problem(seed, steps)
    w = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), w0)
    state = opt.init(w)
    update = jax.jit(opt.update)
    out = []
    for t in range(steps):
        g = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), grad(jax.tree.map(np.asarray, w), t))
        u, state = update(g, state, w)
        w = fn.optim.apply_updates(w, u)
        out.append(jax.tree.map(np.asarray, w))
    return out, state


def run_reference(step_fn, seed=0, steps=STEPS):
    """Trajectory of a NumPy float64 rule ``step_fn(w, g, state, t) -> (w, state)``
    (``t`` from 1; ``state`` starts as ``{}``), applied leaf by leaf."""
    w0, grad = problem(seed, steps)
    w = {k: v.copy() for k, v in w0.items()}
    states = {k: {} for k in SHAPES}
    out = []
    for t in range(steps):
        g = grad(w, t)
        for k in SHAPES:
            w[k], states[k] = step_fn(w[k], g[k], states[k], t + 1)
        out.append({k: v.copy() for k, v in w.items()})
    return out


def assert_trajectories_close(got, want, rtol=2e-5, atol=2e-6):
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want)):
        for k in SHAPES:
            np.testing.assert_allclose(g[k], w[k], rtol=rtol, atol=atol, err_msg=f"step {t + 1}, leaf {k}")
