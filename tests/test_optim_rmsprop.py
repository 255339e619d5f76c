import numpy as np
import pytest

import fnnet as fn
from optim_helpers import assert_trajectories_close, run_fnnet, run_reference


def torch_rmsprop(lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
    """torch.optim.RMSprop's step, written out in float64."""

    def step(w, g, s, t):
        v = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
        new = {"v": v}
        if centered:
            a = alpha * s.get("a", 0.0) + (1 - alpha) * g
            new["a"] = a
            avg = np.sqrt(v - a * a) + eps
        else:
            avg = np.sqrt(v) + eps
        if momentum:
            b = momentum * s.get("b", 0.0) + g / avg
            new["b"] = b
            return w - lr * b, new
        return w - lr * g / avg, new

    return step


@pytest.mark.parametrize("kwargs", [
    dict(), dict(decay=0.9, eps=1e-4), dict(momentum=0.9), dict(centered=True),
    dict(centered=True, momentum=0.5),
], ids=["defaults", "decay-eps", "momentum", "centered", "centered-momentum"])
def test_rmsprop_matches_torch_rule(kwargs):
    got, _ = run_fnnet(fn.optim.rmsprop(0.01, **kwargs))
    ref_kwargs = dict(kwargs)
    if "decay" in ref_kwargs:
        ref_kwargs["alpha"] = ref_kwargs.pop("decay")
    want = run_reference(torch_rmsprop(0.01, **ref_kwargs))
    assert_trajectories_close(got, want, rtol=5e-5, atol=5e-6)


@pytest.mark.parametrize("kwargs,what", [
    (dict(learning_rate=-0.01), "learning_rate must be >= 0"),
    (dict(decay=1.0), r"decay must be in \[0, 1\), got 1.0"),
    (dict(eps=-1.0), "eps must be > 0, got -1.0"),
    (dict(eps=0.0), "eps must be > 0, got 0.0"),
    (dict(momentum=-0.9), "momentum must be >= 0, got -0.9"),
])
def test_rmsprop_invalid_hyperparameters(kwargs, what):
    with pytest.raises(ValueError, match=rf"^rmsprop: {what}"):
        fn.optim.rmsprop(**kwargs)


def test_rmsprop_state_is_named():
    state = fn.optim.rmsprop(0.01).init({"w": np.zeros(3, np.float32)})
    assert isinstance(state[0], fn.optim.ScaleByRmsState)
    assert state[-1].count.dtype == np.int32
