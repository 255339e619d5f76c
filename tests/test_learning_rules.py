"""Learning rules (fnnet.rules): each rule's backward is exactly the stated formula, the
checkers report the intended difference as such (and still catch real errors), and
the diagnostics measure the angle to the true gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.rules import GradientReversal, RoundSTE, SignSTE, feedback_alignment

CE = fn.losses.softmax_cross_entropy


@pytest.fixture(scope="module")
def fa_problem():
    net = fn.serial(fn.Dense(6), fn.Tanh, feedback_alignment(fn.Dense(5), jax.random.key(9)),
                    fn.Relu, fn.Dense(3))
    params = net.init(jax.random.key(0), (4,))
    x, y = jax.random.normal(jax.random.key(1), (8, 4)), jnp.arange(8) % 3
    return net, params, x, y


def test_feedback_alignment_backward_is_the_stated_formula():
    dense = fn.Dense(3)
    fa = feedback_alignment(dense, jax.random.key(7))
    params = dense.init(jax.random.key(0), (4,))
    x, dy = jax.random.normal(jax.random.key(1), (5, 4)), jax.random.normal(jax.random.key(2), (5, 3))
    y, res = fa.fwd(params, x)
    np.testing.assert_array_equal(y, fn.apply(dense, params, x))
    dparams, dx = fa.bwd(res, dy)
    true_dparams, true_dx = dense.bwd(dense.fwd(params, x)[1], dy)
    B = fn.initializers.glorot_uniform(jax.random.key(7), (4, 3), jnp.float32)
    np.testing.assert_allclose(dx, dy @ B.T, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(dparams), jax.tree.leaves(true_dparams)):
        np.testing.assert_array_equal(a, b)           # dW, db are the true ones
    assert not np.allclose(dx, true_dx)
    other = feedback_alignment(dense, jax.random.key(8)).bwd(res, dy)[1]
    assert not np.allclose(other, dx)                 # B comes from the key
    jitted = jax.jit(lambda p, x, dy: fa.bwd(fa.fwd(p, x)[1], dy))(params, x, dy)
    np.testing.assert_allclose(jitted[1], dx, rtol=1e-5)  # jit vs eager


def test_check_grads_reports_the_rule_as_intended(fa_problem):
    net, params, x, y = fa_problem
    report = fn.check_grads(net, CE, params, x, y, num_directions=1)
    assert report.ok, report
    rules = {leaf.path: leaf.rule for leaf in report.leaves}
    assert rules["[0]['w']"] == "feedback alignment" and rules["[4]['w']"] == ""
    assert "intentionally not the true gradient: feedback alignment" in str(report)
    # the upstream layer really differs from the true gradient (finite differences)
    assert next(l for l in report.leaves if l.path == "[0]['w']").fd_status == "intended"


def test_check_grads_still_catches_a_wrong_layer_upstream_of_a_rule(fa_problem):
    net, params, x, y = fa_problem
    dense = fn.Dense(6)
    broken = fn.Layer(dense.init, dense.fwd,
                      lambda res, dy: ({"w": 2 * dense.bwd(res, dy)[0]["w"],
                                        "b": dense.bwd(res, dy)[0]["b"]}, dense.bwd(res, dy)[1]))
    bad = fn.serial(broken, *fn.core.meta(net).graph.children[1:])
    report = fn.check_grads(bad, CE, params, x, y, num_directions=1)
    assert [l.path for l in report.failures] == ["[0]['w']"], report


@pytest.mark.parametrize("layer,true_factor", [(SignSTE, 0.0), (RoundSTE, 0.0),
                                               (GradientReversal(0.5), None)])
def test_ste_and_gradient_reversal(layer, true_factor):
    x = jnp.array([[-1.7, -0.2, 0.4, 2.6]])
    dy = jnp.array([[1.0, -2.0, 3.0, 0.5]])
    y, res = layer.fwd((), x)
    _, dx = layer.bwd(res, dy)
    if layer is SignSTE:
        np.testing.assert_array_equal(y, jnp.sign(x))
    if layer is RoundSTE:
        np.testing.assert_array_equal(y, jnp.round(x))
    np.testing.assert_allclose(dx, dy if true_factor is not None else -0.5 * dy)
    np.testing.assert_array_equal(jax.jit(lambda x, dy: layer.bwd(layer.fwd((), x)[1], dy)[1])(
        x, dy), dx)                                   # jit vs eager
    _, true_dx = fn.core.meta(layer).true_bwd(res, dy)
    np.testing.assert_array_equal(true_dx, dy * true_factor if true_factor is not None else dy)
    report = fn.check_layer(layer, (), jax.random.normal(jax.random.key(0), (3, 4)),
                            num_directions=1)
    assert report.ok and report.leaves[0].rule == fn.core.meta(layer).rule, report


def test_angles_in_the_diagnostics(fa_problem):
    net, params, x, y = fa_problem
    angles = np.asarray(jax.jit(lambda p: fn.rules.alignment_angles(net, CE, p, x, y))(params))
    assert angles[0] > 1.0 and angles[2] == pytest.approx(0, abs=1e-3)
    assert angles[4] == pytest.approx(0, abs=1e-3) and np.isnan(angles[1])
    diag = fn.gradient_diagnostics(net, CE, params, x, y, jit=True)
    assert diag.vjp_ok, diag                       # the rule's dx is not a "wrong backward"
    np.testing.assert_allclose(diag.column("alignment_angle")[[0, 2, 4]], angles[[0, 2, 4]],
                               atol=1e-3)
    assert "angle to grad" in str(diag) and "dx: feedback alignment" in str(diag)


def test_errors_are_clear():
    with pytest.raises(TypeError, match="feedback_alignment: expects a Dense layer"):
        feedback_alignment(fn.Relu, jax.random.key(0))
    with pytest.raises(TypeError, match="key must be a jax.random key"):
        feedback_alignment(fn.Dense(2), 3)
    with pytest.raises(ValueError, match="GradientReversal: scale must be a finite number"):
        GradientReversal(float("nan"))
    with pytest.raises(TypeError, match="SignSTE: expected a floating-point"):
        SignSTE.fwd((), jnp.array([1, 2]))
