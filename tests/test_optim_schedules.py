import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

STEPS = np.arange(0, 130)


def closed_form(f):
    return np.array([f(t) for t in STEPS])


def evaluate(schedule):
    # Jitted, on an int32 step array: the way an optimizer calls it.
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(STEPS, jnp.int32)))


def test_constant():
    np.testing.assert_allclose(evaluate(fn.optim.constant_schedule(0.3)), np.full(len(STEPS), 0.3), rtol=1e-7)


def test_linear():
    # micrograd's demo: lr = 1.0 - 0.9 * k / 100 for k < 100, then flat at 0.1
    got = evaluate(fn.optim.linear_schedule(1.0, 0.1, transition_steps=100))
    np.testing.assert_allclose(got, closed_form(lambda t: 1.0 - 0.9 * min(t, 100) / 100), rtol=1e-6)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    sched = fn.optim.exponential_decay(0.5, transition_steps=20, decay_rate=0.3, staircase=staircase)
    e = (lambda t: math.floor(t / 20)) if staircase else (lambda t: t / 20)
    np.testing.assert_allclose(evaluate(sched), closed_form(lambda t: 0.5 * 0.3 ** e(t)), rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay(alpha):
    sched = fn.optim.cosine_decay_schedule(0.2, decay_steps=100, alpha=alpha)
    want = closed_form(lambda t: 0.2 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100)) + alpha))
    np.testing.assert_allclose(evaluate(sched), want, rtol=1e-5, atol=1e-7)
    assert evaluate(sched)[-1] == pytest.approx(0.2 * alpha, abs=1e-7)   # flat after decay_steps


def test_warmup_cosine_decay():
    sched = fn.optim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110, end_value=0.05)

    def f(t):
        if t < 10:
            return t / 10
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t - 10, 100) / 100))

    got = evaluate(sched)
    np.testing.assert_allclose(got, closed_form(f), rtol=1e-5, atol=1e-7)
    assert got[0] == 0.0 and got[10] == pytest.approx(1.0) and got[110] == pytest.approx(0.05)


def test_schedule_drives_the_optimizer_from_step_zero():
    sched = fn.optim.exponential_decay(1.0, transition_steps=1, decay_rate=0.5)
    opt = fn.optim.sgd(sched)
    g = {"w": jnp.ones(1)}
    state = opt.init(g)
    got = []
    for _ in range(3):
        u, state = opt.update(g, state)
        got.append(float(u["w"][0]))
    assert got == [-1.0, -0.5, -0.25]


@pytest.mark.parametrize("make,match", [
    (lambda: fn.optim.exponential_decay(0.1, transition_steps=0, decay_rate=0.5), "transition_steps must be > 0"),
    (lambda: fn.optim.exponential_decay(-0.1, 10, 0.5), "init_value must be >= 0, got -0.1"),
    (lambda: fn.optim.cosine_decay_schedule(0.1, decay_steps=0), "decay_steps must be > 0"),
    (lambda: fn.optim.linear_schedule(0.1, -0.1, 10), "linear_schedule: end_value must be >= 0, got -0.1"),
    (lambda: fn.optim.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), "decay_steps must be > warmup_steps"),
])
def test_invalid_schedules(make, match):
    with pytest.raises(ValueError, match=match):
        make()
