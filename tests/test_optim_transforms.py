import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from optim_helpers import SHAPES, STEPS, assert_trajectories_close, problem, run_fnnet, run_reference

T = fn.optim


def test_clip_by_global_norm_scales_all_leaves_together():
    g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}       # global norm 5
    clip = T.clip_by_global_norm(1.0)
    u, _ = clip.update(g, clip.init(g))
    np.testing.assert_allclose(u["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(u["b"], [[0.8]], rtol=1e-6)
    np.testing.assert_allclose(T.global_norm(u), 1.0, rtol=1e-6)


def test_clip_by_global_norm_leaves_small_and_zero_updates_alone():
    clip = T.clip_by_global_norm(10.0)
    for g in ({"a": jnp.array([3.0, 4.0])}, {"a": jnp.zeros(2)}):
        u, _ = clip.update(g, clip.init(g))
        np.testing.assert_array_equal(u["a"], g["a"])


def test_chain_clip_then_sgd_momentum_matches_reference():
    opt = T.chain(T.clip_by_global_norm(1.0), T.trace(0.9), T.scale_by_learning_rate(0.1))
    got, state = run_fnnet(opt)
    assert isinstance(state, tuple) and len(state) == 3
    # Clipping is global over both leaves, so the reference works on the whole tree.
    w, grad = problem(0)
    b = {k: 0.0 for k in SHAPES}
    want = []
    for t in range(STEPS):
        g = grad(w, t)
        norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
        g = {k: v * min(1.0, 1.0 / norm) for k, v in g.items()}
        b = {k: 0.9 * b[k] + g[k] for k in SHAPES}
        w = {k: w[k] - 0.1 * b[k] for k in SHAPES}
        want.append(w)
    assert_trajectories_close(got, want)


def test_add_decayed_weights_before_lr_is_l2():
    opt = T.chain(T.add_decayed_weights(0.1), T.scale_by_learning_rate(0.05))
    got, _ = run_fnnet(opt)
    assert_trajectories_close(got, run_reference(lambda w, g, s, t: (w - 0.05 * (g + 0.1 * w), s)))


def test_add_decayed_weights_needs_params():
    t = T.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="add_decayed_weights: weight decay needs the params"):
        t.update({"w": jnp.ones(2)}, t.init(None))


def test_scale_by_learning_rate_accepts_traced_rate():
    # Sweeps build optimizers from traced scalars: no validation may concretize them.
    def run(lr):
        opt = fn.optim.adam(lr)
        g = {"w": jnp.ones(2)}
        u, _ = opt.update(g, opt.init(g), g)
        return u["w"][0]

    got = jax.jit(jax.vmap(run))(jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(got, [-0.1, -0.2], rtol=1e-5)


@pytest.mark.parametrize("make,match", [
    (lambda: T.clip_by_global_norm(0.0), "clip_by_global_norm: max_norm must be > 0, got 0.0"),
    (lambda: T.trace(-1.0), "trace: momentum must be >= 0, got -1.0"),
    (lambda: T.scale_by_adam(b2=1.0), r"scale_by_adam: b2 must be in \[0, 1\)"),
    (lambda: T.add_decayed_weights(-1e-4), "add_decayed_weights: weight_decay must be >= 0"),
    (lambda: T.scale_by_learning_rate(-1.0), "scale_by_learning_rate: learning_rate must be >= 0"),
])
def test_invalid_transform_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_numeric_learning_rate_is_a_type_error():
    with pytest.raises(TypeError, match="sgd: learning_rate must be a number or a schedule step -> lr, got 'fast'"):
        fn.optim.sgd("fast")


def test_chain_rejects_a_state_from_another_optimizer():
    g = {"w": jnp.ones(2)}
    opt = T.chain(T.clip_by_global_norm(1.0), T.scale_by_learning_rate(0.1))
    short = T.chain(T.clip_by_global_norm(1.0)).init(g)   # zip would silently skip the lr
    with pytest.raises(ValueError, match="chain: the state must be a tuple of 2 entries .* got 1 entries"):
        opt.update(g, short)
