import numpy as np
import pytest

import fnnet as fn
from optim_helpers import assert_trajectories_close, run_fnnet, run_reference


def torch_adam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam / AdamW's step, written out in float64 (t counts from 1)."""

    def step(w, g, s, t):
        if decoupled:
            w = w * (1 - lr * weight_decay)           # AdamW: w <- w - lr wd w
        elif weight_decay:
            g = g + weight_decay * w                  # Adam: L2 added to the gradient
        m = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        return w - lr * m_hat / (np.sqrt(v_hat) + eps), {"m": m, "v": v}

    return step


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(b1=0.5, b2=0.9, eps=1e-3),
    dict(weight_decay=0.1),
], ids=["defaults", "betas-eps", "l2"])
def test_adam_matches_torch_rule(kwargs):
    got, state = run_fnnet(fn.optim.adam(0.05, **kwargs))
    want = run_reference(torch_adam(0.05, **kwargs))
    assert_trajectories_close(got, want)
    adam_state = [s for s in state if isinstance(s, fn.optim.ScaleByAdamState)][0]
    assert adam_state.count.dtype == np.int32 and int(adam_state.count) == 50


@pytest.mark.parametrize("wd", [0.0, 0.01, 0.5])
def test_adamw_matches_torch_rule(wd):
    got, _ = run_fnnet(fn.optim.adamw(0.05, weight_decay=wd))
    want = run_reference(torch_adam(0.05, weight_decay=wd, decoupled=True))
    assert_trajectories_close(got, want)


def test_adamw_and_adam_l2_differ():
    # Guards against implementing one as the other.
    a, _ = run_fnnet(fn.optim.adam(0.05, weight_decay=0.5), steps=5)
    w, _ = run_fnnet(fn.optim.adamw(0.05, weight_decay=0.5), steps=5)
    assert not np.allclose(a[-1]["w"], w[-1]["w"], rtol=1e-3)


def test_adam_first_step_is_lr_times_sign():
    # With bias correction from t = 1 the first step is -lr * g / (|g| + eps) ~ -lr sign(g).
    opt = fn.optim.adam(0.1)
    g = {"w": np.array([3.0, -0.02], np.float32)}
    u, _ = opt.update(g, opt.init(g))
    np.testing.assert_allclose(u["w"], [-0.1, 0.1], rtol=1e-5)


@pytest.mark.parametrize("make", [fn.optim.adam, fn.optim.adamw], ids=["adam", "adamw"])
@pytest.mark.parametrize("kwargs,what", [
    (dict(learning_rate=-1e-3), "learning_rate must be >= 0, got -0.001"),
    (dict(b1=1.0), r"b1 must be in \[0, 1\), got 1.0"),
    (dict(b1=-0.1), r"b1 must be in \[0, 1\), got -0.1"),
    (dict(b2=1.5), r"b2 must be in \[0, 1\), got 1.5"),
    (dict(eps=-1e-8), "eps must be > 0, got -1e-08"),
    (dict(eps=0.0), r"eps must be > 0, got 0.0; eps = 0 turns an exactly-zero gradient .* into 0/0 = NaN"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
])
def test_adam_invalid_hyperparameters(make, kwargs, what):
    with pytest.raises(ValueError, match=rf"^{make.__name__}: {what}"):
        make(**kwargs)
