"""Bidirectional (fnnet/layers/bidirectional.py): three-way checks, stacked through serial,
PyTorch's bidirectional 2-layer LSTM/GRU in float64 (when installed), errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

B, T, IN, H = 2, 4, 3, 2
X = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, IN)), jnp.float32)


def test_three_ways_with_pooling():
    """Bidirectional(GRU) -> LastStep, a classifier head, in one check (stacking through
    serial is checked against PyTorch's num_layers=2 below)."""
    net = fn.serial(fn.Bidirectional(fn.GRU(H)), fn.LastStep)
    params = net.init(jax.random.key(0), (T, IN))
    assert set(params[0]) == {"forward", "backward"} and params[0]["backward"]["w_ih"].shape == (IN, 3 * H)
    report = assert_layer_correct(net, params, X)
    assert len(report.leaves) == 9             # 2 directions x 4 leaves + dx


def test_backward_direction_is_the_layer_on_the_reversed_sequence():
    layer = fn.Bidirectional(fn.SimpleRNN(H))
    params = layer.init(jax.random.key(1), (T, IN))
    y = fn.apply(layer, params, X)
    rnn = fn.SimpleRNN(H)
    np.testing.assert_array_equal(y[..., :H], fn.apply(rnn, params["forward"], X))
    np.testing.assert_allclose(y[..., H:], fn.apply(rnn, params["backward"], X[:, ::-1])[:, ::-1],
                               rtol=1e-6)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_matches_pytorch_bidirectional_two_layers_float64(kind):
    torch = pytest.importorskip("torch")
    with jax.enable_x64(True):
        cell = getattr(fn, kind)
        net = fn.serial(fn.Bidirectional(cell(H, dtype=jnp.float64)),
                        fn.Bidirectional(cell(H, dtype=jnp.float64)))
        params = net.init(jax.random.key(2), (T, IN))
        x = np.asarray(np.random.default_rng(3).standard_normal((B, T, IN)))
        dy = np.random.default_rng(4).standard_normal((B, T, 2 * H))
        y, res = net.fwd(params, jnp.asarray(x))
        dparams, dx = net.bwd(res, jnp.asarray(dy))
    module = getattr(torch.nn, kind)(IN, H, num_layers=2, bidirectional=True,
                                     batch_first=True).double()
    with torch.no_grad():
        for layer, p in enumerate(params):
            for direction, suffix in (("forward", ""), ("backward", "_reverse")):
                for k in ("ih", "hh"):
                    getattr(module, f"weight_{k}_l{layer}{suffix}").copy_(
                        torch.tensor(np.asarray(p[direction][f"w_{k}"]).T))
                    getattr(module, f"bias_{k}_l{layer}{suffix}").copy_(
                        torch.tensor(np.asarray(p[direction][f"b_{k}"])))
    xt = torch.tensor(x, requires_grad=True)
    yt, _ = module(xt)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dparams[1]["backward"]["w_hh"],
                               module.weight_hh_l1_reverse.grad.numpy().T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dparams[0]["forward"]["b_ih"], module.bias_ih_l0.grad.numpy(),
                               rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("call,error,match", [
    (lambda: fn.Bidirectional(fn.LSTM), TypeError, "call it, e.g. fn.LSTM(64)"),
    (lambda: fn.Bidirectional(fn.BatchNorm()), ValueError, "layer with state"),
    (lambda: fn.Bidirectional(fn.LSTM(2)).init(jax.random.key(0), (3,)), ValueError,
     "one sequence's (time, features)"),
    (lambda: fn.apply(fn.Bidirectional(fn.Dense(2)), fn.Bidirectional(fn.Dense(2)).init(
        jax.random.key(0), (T, IN)), X[:, 0]), ValueError, "expected a 3-d input"),
    (lambda: fn.apply(fn.Bidirectional(fn.serial(fn.Dense(2), fn.Flatten)), fn.Bidirectional(
        fn.serial(fn.Dense(2), fn.Flatten)).init(jax.random.key(0), (T, IN)), X), ValueError,
     "must map (batch, time, in) to (batch, time, h)"),
])
def test_errors(call, error, match):
    with pytest.raises(error) as info:
        call()
    assert match in str(info.value), str(info.value)
