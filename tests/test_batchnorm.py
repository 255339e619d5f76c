"""BatchNorm: training/inference numerics, the closed-form backward, running statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

K = jax.random.key(0)


def _numpy_bn_train(x, scale, bias, eps):
    axes = tuple(range(x.ndim - 1))
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 3, 4)], ids=["BatchNorm1d", "BatchNorm2d-NHWC"])
def test_three_ways_training_and_inference(shape):
    bn = fn.BatchNorm()
    params = bn.init(K, shape[1:])
    params = {"scale": params["scale"] + 0.5, "bias": params["bias"] - 0.3}
    x = 3.0 * jax.random.normal(jax.random.key(1), shape) + 1.0
    assert_layer_correct(bn, params, x, key=K)                       # batch statistics
    state = {"mean": jnp.linspace(-1, 1, 4), "var": jnp.linspace(0.5, 2, 4)}
    infer = fn.named("bn-inference", bn.init, lambda p, x, key=None: bn.fwd(p, x, state=state),
                     bn.bwd)
    assert_layer_correct(infer, params, x)                            # running statistics
    y = np.asarray(fn.apply(bn, params, x, state=state))
    ref = (np.asarray(x) - state["mean"]) / np.sqrt(np.asarray(state["var"]) + 1e-5) \
        * np.asarray(params["scale"]) + np.asarray(params["bias"])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_running_statistics_after_20_steps_match_numpy_rule():
    """PyTorch's rule: mean' = (1-m) mean + m mu, var' = (1-m) var + m var_unbiased."""
    m, eps = 0.1, 1e-5
    net = fn.serial(fn.BatchNorm(momentum=m, eps=eps), fn.Dense(1))
    params = net.init(K, (3,))
    state = fn.init_state(net, params)
    vg = jax.jit(fn.value_and_grad(net, fn.losses.mean_squared_error))
    xs = 2.0 * jax.random.normal(jax.random.key(3), (20, 5, 3)) + jnp.arange(3.0)
    ys = jax.random.normal(jax.random.key(4), (20, 5, 1))
    ref_mean, ref_var = np.zeros(3), np.ones(3)
    for i in range(20):
        value, grads, state = vg(params, xs[i], ys[i], key=jax.random.key(i), state=state)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        xb = np.asarray(xs[i], np.float64)
        ref_mean = (1 - m) * ref_mean + m * xb.mean(0)
        ref_var = (1 - m) * ref_var + m * xb.var(0, ddof=1)
    np.testing.assert_allclose(state[0]["mean"], ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state[0]["var"], ref_var, rtol=1e-5, atol=1e-6)
    assert state[1] == ()
    # inference uses them (and only them)
    x = xs[0]
    h = (np.asarray(x) - ref_mean) / np.sqrt(ref_var + eps) * np.asarray(params[0]["scale"]) \
        + np.asarray(params[0]["bias"])
    ref = h @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"])
    np.testing.assert_allclose(fn.apply(net, params, x, state=state), ref, rtol=1e-4, atol=1e-5)


def test_manual_equals_autodiff_in_training_mode_inside_a_model():
    net = fn.serial(fn.Dense(4), fn.BatchNorm(), fn.Relu, fn.Dense(2))
    params = net.init(K, (3,))
    x = jax.random.normal(K, (8, 3))
    y = jax.random.normal(jax.random.key(1), (8, 2))
    report = fn.check_grads(net, fn.losses.mean_squared_error, params, x, y, key=K)
    assert report.ok, str(report)
    state = fn.init_state(net, params)
    man = fn.value_and_grad(net, fn.losses.mean_squared_error)(params, x, y, key=K, state=state)
    aut = fn.value_and_grad(net, fn.losses.mean_squared_error, method="autodiff")(
        params, x, y, key=K, state=state)
    for a, b in zip(jax.tree.leaves(man[2]), jax.tree.leaves(aut[2])):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_matches_torch_float64():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)) * 2 + 1
    tbn = torch.nn.BatchNorm2d(4, momentum=0.2, eps=1e-3).double()
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = tbn(xt)
    dy = np.random.default_rng(1).normal(size=yt.shape)
    yt.backward(torch.tensor(dy))
    with jax.enable_x64(True):
        bn = fn.BatchNorm(momentum=0.2, eps=1e-3, dtype=jnp.float64)
        params = bn.init(K, (4,))
        y, res = bn.fwd(params, jnp.asarray(x), key=K)
        dparams, dx = bn.bwd(res, jnp.asarray(dy.transpose(0, 2, 3, 1)))
        state0 = fn.init_state(bn, params)          # follows the params' dtype: float64
        assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(state0))
        state = fn.update_state(bn, state0, res)
        np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-12)
        np.testing.assert_allclose(dparams["scale"], tbn.weight.grad.numpy(), atol=1e-12)
        np.testing.assert_allclose(state["mean"], tbn.running_mean.numpy(), atol=1e-12)
        np.testing.assert_allclose(state["var"], tbn.running_var.numpy(), atol=1e-12)
        tbn.eval()
        y_eval = bn.fwd(params, jnp.asarray(x), state=state)[0]
        np.testing.assert_allclose(y_eval, tbn(xt).detach().numpy().transpose(0, 2, 3, 1),
                                   atol=1e-12)


def test_errors():
    bn = fn.BatchNorm()
    params = bn.init(K, (3,))
    with pytest.raises(ValueError, match="BatchNorm.*inference.*state"):
        fn.apply(bn, params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="BatchNorm.*more than one value per channel"):
        bn.fwd(params, jnp.ones((1, 3)), key=K)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fn.value_and_grad(bn, fn.losses.mean_squared_error)(params, jnp.ones((4, 3)),
                                                             jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="momentum"):
        fn.BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="input has 5 features"):
        bn.fwd(params, jnp.ones((4, 5)), key=K)
