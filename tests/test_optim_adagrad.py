import numpy as np
import pytest

import fnnet as fn
from optim_helpers import assert_trajectories_close, run_fnnet, run_reference


def torch_adagrad(lr, initial_accumulator_value=0.0, eps=1e-10):
    """torch.optim.Adagrad's step (lr_decay 0), written out in float64."""

    def step(w, g, s, t):
        acc = s.get("sum", initial_accumulator_value) + g * g
        return w - lr * g / (np.sqrt(acc) + eps), {"sum": acc}

    return step


@pytest.mark.parametrize("kwargs", [dict(), dict(initial_accumulator_value=0.1, eps=1e-3)],
                         ids=["defaults", "accumulator-eps"])
def test_adagrad_matches_torch_rule(kwargs):
    got, state = run_fnnet(fn.optim.adagrad(0.3, **kwargs))
    assert_trajectories_close(got, run_reference(torch_adagrad(0.3, **kwargs)))
    assert isinstance(state[0], fn.optim.ScaleByRssState)


@pytest.mark.parametrize("kwargs,what", [
    (dict(learning_rate=-0.01), "learning_rate must be >= 0"),
    (dict(initial_accumulator_value=-1.0), "initial_accumulator_value must be >= 0, got -1.0"),
    (dict(eps=-1e-10), "eps must be > 0"),
    (dict(eps=0.0), "eps must be > 0, got 0.0; eps = 0 turns an exactly-zero gradient"),
])
def test_adagrad_invalid_hyperparameters(kwargs, what):
    with pytest.raises(ValueError, match=rf"^adagrad: {what}"):
        fn.optim.adagrad(**kwargs)
