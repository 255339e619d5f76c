import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.diagnostics import GradientDiagnostics, flat_layers, gradient_diagnostics

SCE = fn.losses.softmax_cross_entropy
KEY = jax.random.key(0)


def deep(activation, w_init, depth=8, width=16, classes=3):
    layers = []
    for _ in range(depth):
        layers += [fn.Dense(width, w_init=w_init), activation]
    return fn.serial(*layers, fn.Dense(classes, w_init=w_init))


def data(n=32, d=5, classes=3, seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, classes)


def broken_dense(features, where="dw"):
    """A Dense whose backward has a classic bug: ``dw`` misses x^T (uses x.T of the
    wrong thing: here doubled), or ``dx`` drops a factor."""
    good = fn.Dense(features)

    def bwd(res, dy):
        dparams, dx = good.bwd(res, dy)
        if where == "dw":
            dparams = {**dparams, "w": 2 * dparams["w"]}
        else:
            dx = dx / dy.shape[0]  # a stray 1/n
        return dparams, dx

    return fn.named(f"Broken{good.name}", good.init, good.fwd, bwd)


def test_per_layer_norms_match_the_gradient_of_value_and_grad():
    net = fn.serial(fn.Dense(7), fn.Tanh, fn.Dense(4), fn.Relu, fn.Dense(3))
    x, y = data()
    params = net.init(KEY, (5,))
    diag = gradient_diagnostics(net, SCE, params, x, y)
    value, grads = jax.jit(fn.value_and_grad(net, SCE, method="autodiff"))(params, x, y)
    assert diag.loss == pytest.approx(float(value), rel=1e-6)
    assert [r.name for r in diag.layers] == ["Dense(7)", "Tanh", "Dense(4)", "Relu", "Dense(3)"]
    for row, g, p in zip(diag.layers, grads, params):
        leaves = jax.tree_util.tree_flatten_with_path(g)[0]
        assert set(row.grad_norms) == {jax.tree_util.keystr(k)[2:-2] for k, _ in leaves}
        for name, norm in row.grad_norms.items():
            np.testing.assert_allclose(norm, np.linalg.norm(np.asarray(g[name])), rtol=1e-5)
            np.testing.assert_allclose(row.weight_norms[name], np.linalg.norm(np.asarray(p[name])),
                                       rtol=1e-6)
        if row.has_params:
            total = np.sqrt(sum(np.sum(np.asarray(a) ** 2) for a in jax.tree.leaves(g)))
            np.testing.assert_allclose(row.grad_norm, total, rtol=1e-5)
        else:
            assert row.grad_norms == {} and row.grad_norm is None
    # the input cotangent of layer 0 is the model's dx; each dy is the next layer's dx
    @jax.jit
    def model_dx(params):
        out, res = net.fwd(params, x)
        return net.bwd(res, SCE.bwd(SCE.fwd(out, y)[1], 1.0))[1]

    dx = model_dx(params)
    np.testing.assert_allclose(diag.layers[0].dx_norm, np.linalg.norm(np.asarray(dx)), rtol=1e-5)
    for a, b in zip(diag.layers[:-1], diag.layers[1:]):
        assert a.dy_norm == pytest.approx(b.dx_norm, rel=1e-6)
    assert diag.vjp_ok and diag.wrong_layers == ()
    assert all(r.vjp_error < 1e-5 for r in diag.layers)


def test_known_vanishing_network_is_detected_and_he_relu_is_not():
    x, y = data()
    sig = deep(fn.Sigmoid, fn.initializers.normal(0.1))
    relu = deep(fn.Relu, fn.initializers.he_normal)
    d_sig = gradient_diagnostics(sig, SCE, sig.init(KEY, (5,)), x, y)
    d_relu = gradient_diagnostics(relu, SCE, relu.init(KEY, (5,)), x, y)
    norms = d_sig.column("grad_norm")[[r.index for r in d_sig.param_layers]]
    # each sigmoid layer multiplies the cotangent by <= 1/4 * ||w|| -> geometric decay
    assert np.all(np.diff(np.log10(norms)) > 0), norms
    assert d_sig.depth_ratio == pytest.approx(norms[0] / norms[-1])
    assert d_sig.depth_ratio < 1e-5
    assert d_sig.vanishing and not d_sig.exploding
    assert "VANISHING" in str(d_sig)
    assert 1e-2 < d_relu.depth_ratio < 1e2
    assert not d_relu.vanishing and not d_relu.exploding
    assert "VANISHING" not in str(d_relu)


def test_exploding_ratio_is_detected():
    # unscaled inputs (x ~ 1e4) with weights that bring them back to O(1): the first
    # layer's gradient x^T dh is ~1e4 x the last layer's (compiled once with jit=True)
    x, y = data()
    net = fn.serial(fn.Dense(7, w_init=fn.initializers.normal(1e-4)), fn.Tanh, fn.Dense(3))
    diag = gradient_diagnostics(net, SCE, net.init(KEY, (5,)), 1e4 * x, y, jit=True)
    assert diag.depth_ratio == pytest.approx(diag.layers[0].grad_norm / diag.layers[2].grad_norm)
    eager = gradient_diagnostics(net, SCE, net.init(KEY, (5,)), 1e4 * x, y)
    assert eager.depth_ratio == pytest.approx(diag.depth_ratio, rel=1e-4)
    assert diag.exploding and not diag.vanishing and diag.depth_ratio > 1e3
    assert "EXPLODING" in str(diag)


@pytest.mark.parametrize("bad, where", [(0, "dw"), (2, "dx"), (4, "dw")])
def test_a_broken_backward_is_located_at_its_layer(bad, where):
    layers = [fn.Dense(6), fn.Relu, fn.Dense(5), fn.Tanh, fn.Dense(3)]
    layers[bad] = broken_dense([6, None, 5, None, 3][bad], where)
    net = fn.serial(*layers)
    x, y = data()
    params = net.init(KEY, (5,))
    if bad == 2:  # the whole-model check detects it (but cannot say where) ...
        assert not fn.check_grads(net, SCE, params, x, y, finite_differences=False).ok
    diag = gradient_diagnostics(net, SCE, params, x, y)
    assert diag.wrong_layers == (bad,)
    err = diag.layers[bad].vjp_error
    # doubled dw: error |2g - g| / |2g| = 1/2; dx / n with n = 32: (1 - 1/32)
    assert err == pytest.approx(0.5 if where == "dw" else 1 - 1 / 32, rel=1e-4)
    assert "WRONG BACKWARD" in str(diag) and f"layer {bad} (BrokenDense" in str(diag)


def test_saturation_and_dead_units_are_counted_exactly():
    x = jnp.array([[-10.0, -1.0, 0.5, 8.0], [3.0, -6.0, 0.0, 1.0], [-2.0, 7.0, 0.2, -9.0]])
    sig_sat = np.mean([(abs(v) > np.log(99)) for v in np.asarray(x).ravel()])
    tanh_sat = np.mean(np.abs(np.tanh(np.asarray(x))) > 0.99)
    for act, expected in [(fn.Sigmoid, sig_sat), (fn.Tanh, tanh_sat)]:
        net = fn.serial(fn.Identity, act)
        diag = gradient_diagnostics(net, fn.losses.mean_squared_error, ((), ()), x, jnp.zeros_like(x))
        assert diag.layers[1].saturated == pytest.approx(expected)
        assert diag.layers[1].dead is None and diag.layers[0].saturated is None
    # Relu: units 0..3 of the batch above; unit 2 is never > 0? (0.5, 0.0, 0.2) -> alive
    # make units 1 and 3 dead with a Dense whose bias kills them
    dense = fn.Dense(4)
    p = {"w": jnp.eye(4), "b": jnp.array([0.0, -100.0, 0.0, -100.0])}
    net = fn.serial(dense, fn.Relu)
    diag = gradient_diagnostics(net, fn.losses.mean_squared_error, (p, ()), x, jnp.ones_like(x))
    assert diag.layers[1].dead == pytest.approx(0.5)
    assert diag.dead_layers == (1,)
    # dead units get exactly zero gradient
    assert float(jnp.abs(fn.value_and_grad(net, fn.losses.mean_squared_error)(
        (p, ()), x, jnp.ones_like(x))[1][0]["w"][:, 1]).max()) == 0.0


def test_update_ratio_from_learning_rate_and_from_optimizer_updates():
    net = fn.serial(fn.Dense(4), fn.Relu, fn.Dense(3))
    x, y = data()
    params = net.init(KEY, (5,))
    lr = 0.3
    d_lr = gradient_diagnostics(net, SCE, params, x, y, learning_rate=lr)
    _, grads = fn.value_and_grad(net, SCE)(params, x, y)
    opt = fn.optim.sgd(lr)
    updates, _ = opt.update(grads, opt.init(params), params)
    d_up = gradient_diagnostics(net, SCE, params, x, y, updates=updates)
    for a, b, g, p in zip(d_lr.layers, d_up.layers, grads, params):
        if not a.has_params:
            assert a.update_ratio is None and b.update_ratio is None
            continue
        gn = np.sqrt(sum(np.sum(np.asarray(l) ** 2) for l in jax.tree.leaves(g)))
        wn = np.sqrt(sum(np.sum(np.asarray(l) ** 2) for l in jax.tree.leaves(p)))
        assert a.update_ratio == pytest.approx(lr * gn / wn, rel=1e-5)
        assert b.update_ratio == pytest.approx(a.update_ratio, rel=1e-5)
        assert a.update_ratios["b"] == np.inf  # zero-initialised bias
    assert gradient_diagnostics(net, SCE, params, x, y).layers[0].update_ratio is None
    with pytest.raises(ValueError, match="not both"):
        gradient_diagnostics(net, SCE, params, x, y, learning_rate=lr, updates=updates)
    with pytest.raises(ValueError, match="tree structure"):
        gradient_diagnostics(net, SCE, params, x, y, updates=updates[0])


def test_nested_serial_and_dropout_key_follow_serial():
    inner = fn.serial(fn.Dense(6), fn.Dropout(0.5))
    net = fn.serial(inner, fn.Relu, fn.Dense(3))
    x, y = data()
    params = net.init(KEY, (5,))
    key = jax.random.key(7)
    entries = flat_layers(net, params, key)
    assert [path for path, *_ in entries] == [(0, 0), (0, 1), (1,), (2,)]
    diag = gradient_diagnostics(net, SCE, params, x, y, key=key)
    _, grads = fn.value_and_grad(net, SCE)(params, x, y, key=key)
    np.testing.assert_allclose(diag.layers[0].grad_norms["w"],
                               np.linalg.norm(np.asarray(grads[0][0]["w"])), rtol=1e-5)
    np.testing.assert_allclose(diag.layers[3].grad_norms["w"],
                               np.linalg.norm(np.asarray(grads[2]["w"])), rtol=1e-5)
    assert diag.vjp_ok
    with pytest.raises(ValueError, match="key"):
        gradient_diagnostics(net, SCE, params, x, y)


def test_plain_data_table_and_errors():
    net = fn.serial(fn.Dense(4), fn.Sigmoid, fn.Dense(3))
    x, y = data()
    diag = gradient_diagnostics(net, SCE, net.init(KEY, (5,)), x, y, learning_rate=0.1)
    assert isinstance(diag, GradientDiagnostics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        diag.loss = 0.0
    col = diag.column("grad_norm")
    assert col.shape == (3,) and np.isnan(col[1]) and np.all(col[[0, 2]] > 0)
    d = diag.as_dict()
    assert len(d["layers"]) == 3 and d["layers"][0]["name"] == "Dense(4)"
    assert d["layers"][0]["grad_norm"] == pytest.approx(col[0])
    text = str(diag)
    assert "Dense(4)" in text and "Sigmoid" in text and "no problems found" in text
    with pytest.raises(ValueError, match="unknown column"):
        diag.column("nope")
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\(4\)\)"):
        gradient_diagnostics(net, SCE, net.init(KEY, (5,)), x[:, :4], y)


def test_plots_draw_and_save(tmp_path):
    from fnnet import plotting

    x, y = data()
    net = fn.serial(broken_dense(4), fn.Relu, fn.Dense(3))
    diag = gradient_diagnostics(net, SCE, net.init(KEY, (5,)), x, y)
    fig = plotting.new_figure(ncols=2)
    ax_n = plotting.plot_gradient_norms(diag, ax=fig.axes[0], label="net")
    ax_e = plotting.plot_vjp_errors(diag, ax=fig.axes[1])
    xs, ys = ax_n.lines[0].get_data()
    np.testing.assert_array_equal(xs, [0, 2])
    np.testing.assert_allclose(ys, [diag.layers[0].grad_norm, diag.layers[2].grad_norm])
    bars = ax_e.patches
    assert len(bars) == 3 and bars[0].get_facecolor() != bars[2].get_facecolor()  # red vs green
    path = plotting.save(fig, tmp_path / "diag.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_plotting_without_matplotlib_names_the_extra(monkeypatch):
    import sys

    from fnnet import plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'fnnet\[examples\]'):
        plotting.new_figure()


def test_readme_diagnostics_snippet_runs_and_its_output_is_true():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Seeing inside"):]
    code = next(b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S)
                if "gradient_diagnostics" in b)
    shown = re.findall(r"```\n(gradient diagnostics:.*?)```", section, flags=re.S)[0]
    ns = {}
    exec(compile(code, "README diagnostics", "exec"), ns)
    diag = ns["diag"]
    assert diag.vanishing
    assert f"first/last layer {diag.depth_ratio:.1e}" in shown
    for row in (diag.layers[0], diag.layers[-1]):
        assert f"{row.grad_norm:.2e}" in shown
