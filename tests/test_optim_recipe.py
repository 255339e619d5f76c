"""Hyperparameters are data: split an optimizer into (static kind, numbers), rebuild it
inside jit from traced numbers, one compilation for every value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

O = fn.optim
P = {"w": jnp.array([[1.0, -2.0], [0.5, 0.25]]), "b": jnp.array([0.3, -0.1])}
G = jax.tree.map(lambda p: jnp.cos(3 * p), P)

OPTIMIZERS = {
    # every named optimizer in one chain (one compilation), each with its structural options
    "named": lambda lr: O.chain(O.sgd(lr, momentum=0.9, nesterov=True),
                                O.adam(lr, weight_decay=0.1, mask=O.kernel_mask),
                                O.adamw(O.warmup_cosine_decay_schedule(0.0, lr, 2, 10)),
                                O.rmsprop(lr, momentum=0.5, centered=True), O.adagrad(lr)),
    "wrappers": lambda lr: O.accumulate(O.chain(O.clip_by_global_norm(1.0),
                                                O.masked(O.sgd(O.linear_schedule(lr, 0.0, 5)), O.kernel_mask),
                                                O.freeze({"w": False, "b": True})), 2),
    "loss-scale": lambda lr: O.dynamic_loss_scale(O.adam(lr)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_rebuilt_optimizer_compiles_once_and_updates_like_the_original(name):
    traces = []

    def run(hparams, state, static):
        traces.append(1)
        return O.merge_hparams(static, hparams).update(G, state, P)

    run = jax.jit(run, static_argnums=2)
    opt = OPTIMIZERS[name](0.1)
    static, hparams = O.split_hparams(opt)
    direct = jax.jit(opt.update)
    state_w = state_g = opt.init(P)
    for _ in range(2):
        u_w, state_w = direct(G, state_w, P)
        u_g, state_g = run(hparams, state_g, static)
        # equal up to float32 rounding of the traced hyperparameters (Adam's b2 in its
        # bias correction: 1 - f32(0.999) is off by 1.3e-5 relative)
        for a, b in zip(jax.tree.leaves((u_g, state_g)), jax.tree.leaves((u_w, state_w))):
            np.testing.assert_allclose(a, b, rtol=5e-5, atol=1e-8)
    other = OPTIMIZERS[name](0.03)                          # a new optimizer, a new learning rate
    static2, hparams2 = O.split_hparams(other)
    assert static2 == static and hparams2 != hparams
    u2, _ = run(hparams2, other.init(P), static2)
    assert len(traces) == 1, "a new learning rate recompiled"
    assert not np.allclose(jax.tree.leaves(u2)[-1], jax.tree.leaves(u_g)[-1])


def test_zero_is_structure_and_other_numbers_are_data():
    s0, h0 = O.split_hparams(O.sgd(0.1))
    s1, h1 = O.split_hparams(O.sgd(0.2))
    sm, hm = O.split_hparams(O.sgd(0.1, momentum=0.9))
    assert s0 == s1 and hash(s0) == hash(s1) and (h0, h1) == ([0.1], [0.2])
    assert sm != s0 and hm == [0.1, 0.9]                  # momentum = 0 has no momentum buffer


def test_factories_accept_traced_hyperparameters_under_vmap():
    # what fn.sweep does: every numeric hyperparameter, schedule constants included, traced
    def first_update(lr, mu, end):
        opt = O.sgd(O.linear_schedule(lr, end, 10), momentum=mu, nesterov=True)
        return opt.update(G, opt.init(P), P)[0]["b"]

    got = jax.jit(jax.vmap(first_update))(jnp.array([0.1, 0.2]), jnp.array([0.5, 0.9]), jnp.array([0.0, 0.05]))
    np.testing.assert_allclose(got[1], first_update(0.2, 0.9, 0.05), rtol=1e-6)
    np.testing.assert_allclose(got[0], -0.1 * (1 + 0.5) * G["b"], rtol=1e-6)   # nesterov: g + mu b, b = g


def test_hparams_of_and_rebuild():
    opt = O.adam(1e-3, b1=0.8)
    assert O.hparams_of(opt) == {"learning_rate": 1e-3, "b1": 0.8, "b2": 0.999, "eps": 1e-8,
                                 "weight_decay": 0.0, "mask": None}
    sched = O.linear_schedule(1.0, 0.1, 100)
    assert O.hparams_of(sched) == {"init_value": 1.0, "end_value": 0.1, "transition_steps": 100}
    faster = O.rebuild(opt, learning_rate=2e-3)
    assert O.hparams_of(faster)["learning_rate"] == 2e-3 and O.hparams_of(faster)["b1"] == 0.8
    with pytest.raises(TypeError, match=r"rebuild: adam has no argument\(s\) \['lr'\]"):
        O.rebuild(opt, lr=0.1)


def test_a_foreign_optimizer_has_no_recipe():
    foreign = O.Optimizer(lambda p: (), lambda u, s, p=None: (u, s))    # e.g. an optax optimizer
    assert O.recipe_of(foreign) is None and O.split_hparams(foreign) is None
    assert O.hparams_of(foreign) is None and O.current_learning_rate(foreign, ()) is None
    with pytest.raises(TypeError, match="rebuild: .* was not built by an fnnet.optim factory"):
        O.rebuild(foreign)


def test_current_learning_rate_reads_the_schedule_at_the_step_count():
    opt = O.accumulate(O.sgd(O.linear_schedule(1.0, 0.1, 100), momentum=0.9), 2)
    state = opt.init(P)
    update = jax.jit(opt.update)
    for _ in range(6):                                   # 6 calls = 3 real steps
        _, state = update(G, state, P)
    np.testing.assert_allclose(O.current_learning_rate(opt, state), 1.0 - 0.9 * 3 / 100, rtol=1e-6)
    lr = jax.jit(lambda s, static, h: O.current_learning_rate(O.merge_hparams(static, h), s),
                 static_argnums=1)(state, *O.split_hparams(opt))
    np.testing.assert_allclose(lr, 0.973, rtol=1e-6)
    assert float(O.current_learning_rate(O.adam(3e-4), O.adam(3e-4).init(P))) == pytest.approx(3e-4)
