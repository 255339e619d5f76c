"""SimpleRNN, LSTM, GRU: three-way checks, a NumPy reference (always runs), PyTorch in
float64 (when installed), the structure of BPTT (one matmul per step, nothing
recomputed), one compile per shape, errors, and the sequence loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from layer_checks import assert_layer_correct

CELLS = ["SimpleRNN", "LSTM", "GRU"]
B, T, IN, H = 2, 3, 3, 4


def randn(shape, seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


def make(kind, seed=0):
    layer = getattr(fn, kind)(H)
    params = layer.init(jax.random.key(seed), (T, IN))
    x = jnp.asarray(randn((B, T, IN), seed + 1), jnp.float32)
    return layer, params, x


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def numpy_forward(kind, p, x):
    """PyTorch's equations (nn.RNN / nn.LSTM / nn.GRU, batch_first), step by step, float64."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = np.asarray(x, np.float64)
    h = np.zeros((x.shape[0], p["w_hh"].shape[0]))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        X = x[:, t] @ p["w_ih"] + p["b_ih"]
        Hh = h @ p["w_hh"] + p["b_hh"]
        if kind == "SimpleRNN":
            h = np.tanh(X + Hh)
        elif kind == "LSTM":
            i, f, g, o = np.split(X + Hh, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        else:
            (xr, xz, xn), (hr, hz, hn) = np.split(X, 3, axis=-1), np.split(Hh, 3, axis=-1)
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            n = np.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


def test_three_way_all_cells_in_one_stack():
    """manual vs jax.vjp, float64 finite differences and jit vs eager for all three
    cells at once (a stack SimpleRNN -> GRU -> LSTM: one compile instead of three;
    each cell's params are their own rows in the report)."""
    net = fn.serial(fn.SimpleRNN(H), fn.GRU(H), fn.LSTM(H))
    params = net.init(jax.random.key(0), (T, IN))
    x = jnp.asarray(randn((B, T, IN), 1), jnp.float32)
    report = assert_layer_correct(net, params, x)
    assert len(report.leaves) == 13  # 3 x 4 params leaves + the input


@pytest.fixture(scope="module")
def all_cells():
    """float64 params, input, output cotangent, and every cell's output and manual
    gradients from ONE jitted function (one compile for the three cells, shared by
    the NumPy and the PyTorch comparison)."""
    cells = {kind: make(kind, seed=3) for kind in CELLS}
    with jax.enable_x64(True):
        params = {k: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), c[1])
                  for k, c in cells.items()}
        x = jnp.asarray(cells["LSTM"][2], jnp.float64)
        dy = jnp.asarray(randn((B, T, H), 9))

        @jax.jit
        def run(params, x, dy):
            out = {}
            for kind, (layer, _, _) in cells.items():
                y, res = layer.fwd(params[kind], x)
                out[kind] = (y, *layer.bwd(res, dy))
            return out

        return params, x, dy, run(params, x, dy)


def test_forward_matches_numpy_reference_and_layout(all_cells):
    params, x, _, out = all_cells
    bound = 1 / np.sqrt(H)  # PyTorch's default init U(-1/sqrt(h), 1/sqrt(h))
    for kind, g in (("SimpleRNN", 1), ("LSTM", 4), ("GRU", 3)):
        p = params[kind]
        assert {k: v.shape for k, v in p.items()} == {
            "w_ih": (IN, g * H), "w_hh": (H, g * H), "b_ih": (g * H,), "b_hh": (g * H,)}
        assert all(np.abs(np.asarray(v)).max() <= bound for v in p.values())
        y = out[kind][0]
        assert y.shape == (B, T, H) and y.dtype == jnp.float64
        np.testing.assert_allclose(y, numpy_forward(kind, p, x), rtol=1e-12, atol=1e-13,
                                   err_msg=kind)


def test_matches_pytorch_float64(all_cells):
    torch = pytest.importorskip("torch")
    params, x, dy, out = all_cells
    close = dict(rtol=1e-12, atol=1e-13)
    for kind, module in (("SimpleRNN", torch.nn.RNN), ("LSTM", torch.nn.LSTM),
                         ("GRU", torch.nn.GRU)):
        module = module(IN, H, batch_first=True).double()
        p = {k: np.asarray(v) for k, v in params[kind].items()}
        with torch.no_grad():
            for k in ("ih", "hh"):
                getattr(module, f"weight_{k}_l0").copy_(torch.tensor(p[f"w_{k}"].T))
                getattr(module, f"bias_{k}_l0").copy_(torch.tensor(p[f"b_{k}"]))
        xt = torch.tensor(np.asarray(x), requires_grad=True)
        yt = module(xt)[0]
        (yt * torch.tensor(np.asarray(dy))).sum().backward()
        y, dparams, dx = out[kind]
        np.testing.assert_allclose(y, yt.detach().numpy(), **close, err_msg=kind)
        np.testing.assert_allclose(dx, xt.grad.numpy(), **close, err_msg=kind)
        for k in ("ih", "hh"):
            np.testing.assert_allclose(dparams[f"w_{k}"], getattr(module, f"weight_{k}_l0").grad.numpy().T,
                                       **close, err_msg=kind)
            np.testing.assert_allclose(dparams[f"b_{k}"], getattr(module, f"bias_{k}_l0").grad.numpy(),
                                       **close, err_msg=kind)


def _eqns(jaxpr):
    """The equations of ``jaxpr``, looking through nested jit calls but not into scans."""
    for e in jaxpr.eqns:
        if e.primitive.name in ("pjit", "jit"):
            yield from _eqns(e.params["jaxpr"].jaxpr)
        else:
            yield e


def _scan_bodies(jaxpr):
    return [e.params["jaxpr"].jaxpr for e in _eqns(jaxpr) if e.primitive.name == "scan"]


def _count(jaxpr, prim):
    return sum(e.primitive.name == prim for e in _eqns(jaxpr))


@pytest.mark.parametrize("kind", CELLS)
def test_bptt_structure_one_matmul_per_step_nothing_recomputed(kind):
    """The forward loop does only h @ w_hh; the backward loop only dH @ w_hh^T; the
    input projection and every weight gradient are matmuls OUTSIDE the loops, and the
    backward evaluates no sigmoid/tanh (it reuses the forward's activations)."""
    layer, params, x = make(kind)
    y, res = layer.fwd(params, x)
    fwd_jaxpr = jax.make_jaxpr(lambda p, x: layer.fwd(p, x))(params, x).jaxpr
    bwd_jaxpr = jax.make_jaxpr(layer.bwd)(res, y).jaxpr
    (fbody,), (bbody,) = _scan_bodies(fwd_jaxpr), _scan_bodies(bwd_jaxpr)
    assert _count(fbody, "dot_general") == 1 and _count(fwd_jaxpr, "dot_general") == 1
    assert _count(bbody, "dot_general") == 1 and _count(bwd_jaxpr, "dot_general") == 3
    names = {e.primitive.name for e in _eqns(bwd_jaxpr)} | {e.primitive.name for e in _eqns(bbody)}
    assert not names & {"tanh", "logistic", "exp"}, names


def test_one_compile_per_shape_and_long_and_short_sequences():
    layer = fn.LSTM(3)
    params = layer.init(jax.random.key(0), (5, 2))
    traces = []

    @jax.jit
    def grads(p, x):
        traces.append(x.shape)
        y, res = layer.fwd(p, x)
        return layer.bwd(res, jnp.ones_like(y))

    for t in (1, 500, 500, 1):
        dp, dx = grads(params, jnp.asarray(randn((2, t, 2), t), jnp.float32))
        assert dx.shape == (2, t, 2) and all(np.isfinite(v).all() for v in dp.values())
    assert traces == [(2, 1, 2), (2, 500, 2)]  # one trace per shape, reused after


@pytest.mark.slow  # notebooks/07 derives and checks the same step in the default run
def test_lstm_first_step_gradient_written_out():
    """T = 1, zero state: h = o tanh(i g), so dx is easy to write by hand."""
    layer = fn.LSTM(2)
    p = layer.init(jax.random.key(1), (1, 3))
    x = jnp.asarray(randn((1, 1, 3), 2), jnp.float32)
    y, (dparams, dx) = jax.jit(lambda p, x: (lambda y, res: (y, layer.bwd(res, jnp.ones_like(y))))(
        *layer.fwd(p, x)))(p, x)
    a = np.asarray(x[:, 0] @ p["w_ih"] + p["b_ih"] + p["b_hh"], np.float64)
    i, f, g, o = np.split(a, 4, axis=-1)
    i, g, o = sigmoid(i), np.tanh(g), sigmoid(o)
    c = i * g
    dc = o * (1 - np.tanh(c) ** 2)
    da = np.concatenate([dc * g * i * (1 - i), 0 * f, dc * i * (1 - g ** 2),
                         np.tanh(c) * o * (1 - o)], axis=-1)
    np.testing.assert_allclose(dx[:, 0], da @ np.asarray(p["w_ih"]).T, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dparams["b_hh"], da[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(dparams["w_hh"], 0)  # h_0 = 0: w_hh unused at t = 1


def test_errors_are_clear():
    layer, params, x = make("LSTM")
    with pytest.raises(ValueError, match=r"LSTM\(4\): input has 5 features.*w_ih.*expects 3"):
        layer.fwd(params, jnp.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"LSTM\(4\): expected a 3-d input \(batch, time, features\)"):
        layer.fwd(params, jnp.zeros((3, 3)))
    with pytest.raises(TypeError, match=r"GRU\(4\): expected a floating-point input.*int32"):
        fn.GRU(4).fwd(make("GRU")[1], jnp.zeros((2, 3, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"SimpleRNN\(4\): got an empty sequence"):
        fn.SimpleRNN(4).fwd(make("SimpleRNN")[1], jnp.zeros((2, 0, 3)))
    with pytest.raises(ValueError, match=r"LSTM\(4\): got an empty batch"):
        layer.fwd(params, jnp.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match=r"LSTM: hidden must be a positive int, got 0"):
        fn.LSTM(0)
    net = fn.serial(fn.Dense(5), fn.LSTM(4))
    net_params = net.init(jax.random.key(0), (3, 2))
    net_params = (net_params[0], params)   # an LSTM made for 3 features after a Dense(5)
    with pytest.raises(ValueError, match=r"LSTM\(4\): input has 5 features.*\[layer 1"):
        net.fwd(net_params, jnp.zeros((2, 3, 2)))


# --- the loss over sequences ------------------------------------------------------------

def test_softmax_cross_entropy_averages_over_batch_and_time():
    logits = jnp.asarray(randn((2, 3, 5), 0), jnp.float32)
    labels = jnp.asarray(np.random.default_rng(1).integers(0, 5, (2, 3)), jnp.int32)
    sce = fn.losses.softmax_cross_entropy
    value_and_dlogits = jax.jit(lambda z, t: (lambda v, r: (v, sce.bwd(r, 1.0)))(*sce.fwd(z, t)))
    value, dlogits = value_and_dlogits(logits, labels)
    z = np.asarray(logits, np.float64)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ref = -np.mean(np.take_along_axis(logp, np.asarray(labels)[..., None], -1))
    np.testing.assert_allclose(value, ref, rtol=1e-6)
    # its gradient: (softmax - onehot) / (batch * time)
    ref = (np.exp(logp) - np.eye(5)[np.asarray(labels)]) / 6
    np.testing.assert_allclose(dlogits, ref, rtol=1e-5, atol=1e-7)
