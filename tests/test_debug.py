import jax
import jax.numpy as jnp
import pytest

import fnnet as fn

BCE = fn.losses.sigmoid_binary_cross_entropy
X = jnp.array([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0]], jnp.float32)
Y = jnp.array([[0.0], [1.0], [1.0]], jnp.float32)


def log_layer():
    """log(x): -inf forward at x = 0, inf backward (dy / x) there too."""
    return fn.named("Log", lambda k, s: (), lambda p, x, *, key=None: (jnp.log(x), x),
                    lambda x, dy: ((), dy / x))


def bad_grad_layer():
    """Finite forward (identity) but a backward that divides by zero."""
    return fn.named("BadGrad", lambda k, s: (), lambda p, x, *, key=None: (x, x),
                    lambda x, dy: ((), dy / (x - x)))


def test_all_finite_is_ok():
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    report = fn.find_nonfinite(net, BCE, net.init(jax.random.key(0), (2,)), X, Y)
    assert report.ok and "all forward outputs" in str(report)


def test_reports_the_first_layer_with_a_nonfinite_forward():
    net = fn.serial(fn.Dense(3), fn.Relu, log_layer(), fn.Dense(1))
    report = fn.find_nonfinite(net, BCE, net.init(jax.random.key(0), (2,)), X, Y)
    assert not report.ok
    assert (report.stage, report.position, report.layer, report.what) == ("forward", (2,), "Log", "output")
    assert "layer 2 (Log)" in str(report) and "inf" in str(report)


def test_reports_a_nonfinite_backward_dx_in_a_nested_serial():
    inner = fn.serial(fn.Tanh, bad_grad_layer())
    net = fn.serial(fn.Dense(3), inner, fn.Dense(1))
    report = fn.find_nonfinite(net, BCE, net.init(jax.random.key(0), (2,)), X, Y)
    assert (report.stage, report.position, report.layer, report.what) == ("backward", (1, 1), "BadGrad", "dx")
    assert "[path 1/1]" in str(report)


def test_reports_nonfinite_dparams_with_the_leaf_path():
    net = fn.serial(fn.Dense(2), fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    x = X.at[0, 0].set(jnp.inf)
    report = fn.find_nonfinite(net, BCE, params, x, Y)
    assert report.stage == "input"
    params = (params[0], {"w": params[1]["w"], "b": params[1]["b"].at[0].set(jnp.nan)})
    report = fn.find_nonfinite(net, BCE, params, X, Y)
    assert (report.stage, report.position, report.what) == ("forward", (1,), "output")
    # finite forward and dx, a NaN gradient for one param leaf
    bad_dparams = fn.named("BadParamGrad", lambda k, s: {"w": jnp.ones(())},
                           lambda p, x, *, key=None: (x * p["w"], (x, p["w"])),
                           lambda r, dy: ({"w": jnp.nan * jnp.sum(dy * r[0])}, dy * r[1]))
    net = fn.serial(fn.Dense(2), bad_dparams, fn.Dense(1))
    report = fn.find_nonfinite(net, BCE, net.init(jax.random.key(0), (2,)), X, Y)
    assert (report.stage, report.position, report.layer, report.what) == \
        ("backward", (1,), "BadParamGrad", "dparams['w']")


def test_fit_debug_names_the_layer():
    net = fn.serial(fn.Dense(3), fn.Relu, log_layer(), fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    with pytest.raises(FloatingPointError, match=r"epoch 1 .*\n.*forward output of layer 2 \(Log\)"):
        fn.fit(net, BCE, fn.optim.sgd(0.1), params, X, Y, epochs=10, debug=True)
