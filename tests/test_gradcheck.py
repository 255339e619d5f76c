import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn


def _setup(seed=0):
    net = fn.serial(fn.Dense(5, b_init=fn.initializers.normal(0.3)), fn.Relu,
                    fn.Dense(4, b_init=fn.initializers.normal(0.3)), fn.Tanh, fn.Dense(1))
    k = jax.random.split(jax.random.key(seed), 3)
    params = net.init(k[0], (3,))
    x = jax.random.normal(k[1], (8, 3))
    y = jax.random.bernoulli(k[2], 0.5, (8, 1)).astype(jnp.float32)
    return net, fn.losses.sigmoid_binary_cross_entropy, params, x, y


def _broken_dense(features, *, scale_dw=1.0, drop_db=False):
    """A Dense whose backward has a classic bug."""
    good = fn.Dense(features, b_init=fn.initializers.normal(0.3))

    def bwd(res, dy):
        dparams, dx = good.bwd(res, dy)
        dparams = {"w": scale_dw * dparams["w"], "b": 0 * dparams["b"] if drop_db else dparams["b"]}
        return dparams, dx

    return fn.named("BrokenDense", good.init, good.fwd, bwd)


def test_report_passes_for_a_correct_3_layer_net():
    report = fn.check_grads(*_setup())
    assert report.ok, str(report)
    assert len(report.leaves) == 6
    for leaf in report.leaves:
        assert leaf.autodiff_rel <= report.autodiff_rtol
        assert leaf.fd_status == "ok" and leaf.fd_rel <= report.fd_rtol
    text = str(report)
    assert "PASS: 6/6" in text and "[0]['w']" in text and "float64" in text


@pytest.mark.parametrize("bug", [dict(scale_dw=1.01), dict(drop_db=True)])
def test_report_catches_and_locates_a_broken_backward(bug):
    net = fn.serial(fn.Dense(5, b_init=fn.initializers.normal(0.3)), fn.Tanh, _broken_dense(1, **bug))
    params = net.init(jax.random.key(0), (3,))
    x, y = jax.random.normal(jax.random.key(1), (8, 3)), jnp.ones((8, 1))
    report = fn.check_grads(net, fn.losses.sigmoid_binary_cross_entropy, params, x, y)
    assert not report.ok and not bool(report)
    bad = {leaf.path for leaf in report.failures}
    assert bad == ({"[2]['w']"} if "scale_dw" in bug else {"[2]['b']"})
    assert "FAIL" in str(report)
    for leaf in report.failures:
        assert leaf.fd_status == "FAIL" and not leaf.autodiff_ok


def test_check_layer_checks_params_and_input():
    layer = fn.Dense(3)
    params = layer.init(jax.random.key(0), (4,))
    report = fn.check_layer(layer, params, jax.random.normal(jax.random.key(1), (2, 4)))
    assert report.ok and {leaf.path for leaf in report.leaves} == {"[0]['w']", "[0]['b']", "dx"}

    def bad_bwd(res, dy):  # forgets the transpose-free form: returns dx scaled
        dparams, dx = layer.bwd(res, dy)
        return dparams, 2 * dx

    report = fn.check_layer(fn.Layer(layer.init, layer.fwd, bad_bwd), params,
                            jax.random.normal(jax.random.key(1), (2, 4)))
    assert [leaf.path for leaf in report.failures] == ["dx"]


def test_kinks_are_skipped_not_failed():
    # XOR at init: zero biases and the input (0, 0) put every hidden ReLU exactly at its kink.
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.array([[0], [1], [1], [0]], jnp.float32)
    report = fn.check_grads(net, fn.losses.sigmoid_binary_cross_entropy, params, x, y)
    statuses = {leaf.path: leaf.fd_status for leaf in report.leaves}
    assert statuses["[0]['b']"] == "kink" and statuses["[0]['w']"] == "ok"
    assert report.ok and "fd skipped: kink" in str(report)


def test_float64_off_is_enabled_locally_and_said():
    assert not jax.config.jax_enable_x64
    report = fn.check_grads(*_setup(1))
    assert "enabled locally" in report.note and "jax_enable_x64" in report.note
    assert not jax.config.jax_enable_x64  # restored afterwards
    assert report.dtype == "float32"


def test_float64_params_get_tight_autodiff_tolerance():
    net, loss, params, x, y = _setup(2)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        report = fn.check_grads(net, loss, p64, x.astype(jnp.float64), y.astype(jnp.float64))
        assert report.ok and report.dtype == "float64" and report.autodiff_rtol == 1e-10
        assert report.note == ""


def test_finite_differences_can_be_disabled():
    report = fn.check_grads(*_setup(), finite_differences=False)
    assert report.ok and all(leaf.fd_status == "off" and leaf.fd_rel is None for leaf in report.leaves)
    assert "disabled" in report.note


def test_manual_gradient_with_the_wrong_tree_is_a_clear_error():
    # dparams as a tuple (w, b) instead of params' dict: same leaves, wrong tree
    layer = fn.Dense(2)
    params = layer.init(jax.random.key(0), (2,))

    def tuple_bwd(res, dy):
        dparams, dx = layer.bwd(res, dy)
        return (dparams["w"], dparams["b"]), dx

    with pytest.raises(ValueError, match=r"Dense\(2\): the manual gradient has tree structure"):
        fn.check_layer(fn.Layer(layer.init, layer.fwd, tuple_bwd), params, jnp.ones((3, 2)))


def test_whole_model_report_points_at_the_wrong_layer_first():
    """A wrong dx in layer 2 fails the params rows of layer 0; the report names layer 2."""
    dense = fn.Dense(4)
    bad = fn.Layer(dense.init, dense.fwd,
                   lambda r, dy: (lambda g: (g[0], 2 * g[1]))(dense.bwd(r, dy)))
    net = fn.serial(fn.Dense(4), fn.Tanh, bad, fn.Dense(1))
    params = net.init(jax.random.key(0), (3,))
    x, y = jax.random.normal(jax.random.key(1), (8, 3)), jnp.ones((8, 1))
    report = fn.check_grads(net, fn.losses.mean_squared_error, params, x, y, num_directions=1)
    assert {leaf.path for leaf in report.failures} == {"[0]['w']", "[0]['b']"}
    lines = str(report).splitlines()
    assert lines[1].startswith("  ! wrong backward in layer 2 (Dense(4), path (2,))"), report
    assert max(map(len, lines)) <= 100, report
    assert fn.check_grads(fn.serial(fn.Dense(2)), fn.losses.mean_squared_error,
                          fn.serial(fn.Dense(2)).init(jax.random.key(0), (3,)), x,
                          jnp.ones((8, 2))).located == ()
