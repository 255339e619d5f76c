import numpy as np
import pytest

import fnnet as fn
from optim_helpers import assert_trajectories_close, run_fnnet, run_reference


def torch_sgd(lr, momentum=0.0, nesterov=False):
    """torch.optim.SGD's step (dampening 0), written out in float64."""

    def step(w, g, s, t):
        if momentum:
            b = g.copy() if t == 1 else momentum * s["b"] + g   # torch: buffer = g on the first step
            s = {"b": b}
            g = g + momentum * b if nesterov else b
        return w - lr * g, s

    return step


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
def test_sgd_matches_torch_rule(momentum, nesterov):
    got, _ = run_fnnet(fn.optim.sgd(0.05, momentum=momentum, nesterov=nesterov))
    want = run_reference(torch_sgd(0.05, momentum, nesterov))
    assert_trajectories_close(got, want)


def test_plain_sgd_contract_is_unchanged():
    opt = fn.optim.sgd(0.1)
    state = opt.init({"w": np.zeros(2, np.float32)})
    assert isinstance(state[0], fn.optim.ScaleByScheduleState)
    assert state[0].count.dtype == np.int32 and state[0].count.shape == ()
    u, state = opt.update({"w": np.array([1.0, -2.0], np.float32)}, state)
    np.testing.assert_allclose(u["w"], [-0.1, 0.2])
    assert int(state[0].count) == 1


def test_sgd_accepts_a_schedule():
    sched = fn.optim.exponential_decay(0.1, transition_steps=10, decay_rate=0.5)
    got, _ = run_fnnet(fn.optim.sgd(sched, momentum=0.9))

    def step(w, g, s, t):
        lr = 0.1 * 0.5 ** ((t - 1) / 10)
        b = g if t == 1 else 0.9 * s["b"] + g
        return w - lr * b, {"b": b}

    assert_trajectories_close(got, run_reference(step))


@pytest.mark.parametrize("kwargs,match", [
    (dict(learning_rate=-0.1), r"sgd: learning_rate must be >= 0, got -0.1"),
    (dict(learning_rate=0.1, momentum=-0.5), r"sgd: momentum must be >= 0, got -0.5"),
    (dict(learning_rate=0.1, nesterov=True), r"sgd: nesterov=True needs momentum > 0"),
])
def test_sgd_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn.optim.sgd(**kwargs)
