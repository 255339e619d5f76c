import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet import losses as L
from layer_checks import assert_loss_correct

SHAPES = [(4, 1), (3, 5), (1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_mse_three_way(shape, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    assert_loss_correct(L.mean_squared_error, jax.random.normal(k1, shape), jax.random.normal(k2, shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_bce_three_way(shape, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    z = 3 * jax.random.normal(k1, shape)
    t = jax.random.uniform(k2, shape)  # soft labels are fine
    assert_loss_correct(L.sigmoid_binary_cross_entropy, z, t)


@pytest.mark.parametrize("n,k", [(4, 3), (1, 2), (6, 10)])
@pytest.mark.parametrize("labels", ["int", "onehot", "probs"])
def test_softmax_ce_three_way(n, k, labels):
    k1, k2 = jax.random.split(jax.random.key(n * k))
    z = 2 * jax.random.normal(k1, (n, k))
    t = {"int": jax.random.randint(k2, (n,), 0, k),
         "onehot": jax.nn.one_hot(jax.random.randint(k2, (n,), 0, k), k),
         "probs": jax.nn.softmax(jax.random.normal(k2, (n, k)))}[labels]
    assert_loss_correct(L.softmax_cross_entropy, z, t)


def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_values_match_numpy_definitions():
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((5, 3)), rng.uniform(size=(5, 3))
    zf, tf = jnp.asarray(z, jnp.float32), jnp.asarray(t, jnp.float32)
    p = _np_sigmoid(z)
    np.testing.assert_allclose(L.mean_squared_error.fwd(zf, tf)[0], np.mean((z - t) ** 2), rtol=1e-5)
    np.testing.assert_allclose(L.sigmoid_binary_cross_entropy.fwd(zf, tf)[0],
                               np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))), rtol=1e-5)
    labels = np.array([0, 2, 1, 1, 0])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(L.softmax_cross_entropy.fwd(zf, jnp.asarray(labels))[0],
                               -np.mean(logp[np.arange(5), labels]), rtol=1e-5)


def test_bce_backward_is_predicted_minus_true_over_n():
    z = jnp.array([[0.3], [-1.2], [2.0], [0.0]])
    t = jnp.array([[0.0], [1.0], [1.0], [0.0]])
    _, res = L.sigmoid_binary_cross_entropy.fwd(z, t)
    np.testing.assert_allclose(L.sigmoid_binary_cross_entropy.bwd(res, 1.0),
                               (jax.nn.sigmoid(z) - t) / 4, rtol=1e-6)


@pytest.mark.parametrize("loss,target,expected", [
    # two of four confidently wrong by a logit of 1e4: mean loss 1e4 / 2
    (L.sigmoid_binary_cross_entropy, jnp.array([[1.0], [0.0], [1.0], [0.0]]), 1e4 / 2),
    # two of four wrong by a logit gap of 2e4: mean loss 2e4 / 2
    (L.softmax_cross_entropy, jnp.array([0, 1, 1, 0]), 2e4 / 2),
])
def test_extreme_logits_stay_finite(loss, target, expected):
    z = jnp.array([[1e4], [1e4], [-1e4], [-1e4]])
    if loss is L.softmax_cross_entropy:
        z = jnp.concatenate([z, -z], axis=1)
    value, res = loss.fwd(z, target)
    grad = loss.bwd(res, 1.0)
    _, auto = jax.value_and_grad(lambda z: loss.fwd(z, target)[0])(z)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(auto))
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, auto, rtol=1e-6)


def test_label_shape_n_against_logits_n1_is_a_clear_error():
    with pytest.raises(ValueError, match=r"sigmoid_binary_cross_entropy: prediction shape \(4, 1\) "
                                         r"and target shape \(4,\) must match.*y\[:, None\]"):
        L.sigmoid_binary_cross_entropy.fwd(jnp.zeros((4, 1)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="mean_squared_error.*must match exactly"):
        L.mean_squared_error.fwd(jnp.zeros((4, 2)), jnp.zeros((4, 1)))


def test_softmax_ce_bad_labels():
    with pytest.raises(TypeError, match="must be integers"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="must match"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3), jnp.int32), jnp.zeros((4,), jnp.int32))


def test_softmax_ce_integer_label_column_says_what_to_do():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: integer labels have shape \(4, 1\).*"
                                         r"must be \(4,\).*y\.reshape\(-1\)"):
        L.softmax_cross_entropy.fwd(jnp.zeros((4, 3)), jnp.zeros((4, 1), jnp.int32))


# --- the losses of the second round: L1, Huber, hinge, KL, weighted/smoothed CE, -----
# --- BCE with pos_weight, sequences and masks ----------------------------------------
#
# Each case: (loss, pred, target, numpy_value, torch_value). ``numpy_value(pred, target)``
# is the definition in float64 NumPy; its gradient is taken by NumPy central differences,
# so the reference involves no JAX at all. ``torch_value`` is PyTorch's counterpart.

_rng = np.random.default_rng(7)


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_smooth_weighted_ce(z, q, w, eps, denom):
    k = z.shape[-1]
    q = (1 - eps) * q + eps / k
    return -np.sum(w * q * _np_log_softmax(z)) / denom


def _np_huber(d, delta):
    a = np.abs(d)
    return np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))


def _np_masked_weighted_ce(z, labels, mask):
    y = np.where(mask, labels, 0)  # the labels at masked positions are never read
    nll = -np.take_along_axis(_np_log_softmax(z), y[..., None], -1)[..., 0]
    return np.sum((W3[y] * nll)[mask]) / W3[y][mask].sum()


def _np_bce_pos_weight(z, t, pw):
    logsig, log1msig = -np.logaddexp(0, -z), -np.logaddexp(0, z)
    return np.mean(-(pw * t * logsig + (1 - t) * log1msig))


# Few distinct shapes (3, 5), (4, 3), (2, 2, 3), as the tests above: JAX compiles each
# primitive once per shape, which is most of these tests' time.
_reg_p, _reg_t = _rng.normal(size=(3, 5)), _rng.normal(size=(3, 5))
_hinge_z = _rng.normal(size=(3, 5)) * 1.5
_hinge_t = np.where(_rng.random((3, 5)) < 0.5, -1.0, 1.0)
_kl_z = _rng.normal(size=(4, 3)) * 2
_kl_q = _rng.random((4, 3))
_kl_q[0, 1] = 0.0  # 0 log 0 = 0
_kl_q /= _kl_q.sum(-1, keepdims=True)
_ce_z = _rng.normal(size=(4, 3)) * 2
_ce_y = np.array([0, 2, 1, 1])
_ce_q = _rng.random((4, 3))
_ce_q /= _ce_q.sum(-1, keepdims=True)
_bce_z, _bce_t = _rng.normal(size=(3, 5)) * 2, (_rng.random((3, 5)) < 0.4).astype(float)
_PW = np.array([2.0, 0.5, 1.0, 3.0, 1.5])
_seq_z = _rng.normal(size=(2, 2, 3))
_seq_y = np.array([[1, 0], [2, 2]])
_seq_m = np.array([[True, False], [True, True]])
_seq_y_pad = np.where(_seq_m, _seq_y, -1)  # an invalid label where masked: never read
_rows_p, _rows_t = _rng.normal(size=(2, 2, 3)) * 2, _rng.normal(size=(2, 2, 3))
W3 = np.array([1.0, 2.0, 0.5])
_ce_m = np.array([True, False, True, True])
_ce_y_pad = np.where(_ce_m, _ce_y, 5)  # an invalid label where masked: never read


def _torch_cases(torch):
    nn, F = torch.nn, torch.nn.functional
    T = lambda a: torch.as_tensor(np.asarray(a))
    w = T(W3)
    return {
        "mae": lambda p, t: nn.L1Loss()(p, T(t)),
        "huber": lambda p, t: nn.HuberLoss(delta=0.7)(p, T(t)),
        "hinge": lambda p, t: F.relu(1 - T(t) * p).mean(),
        "kl": lambda p, t: nn.KLDivLoss(reduction="batchmean")(F.log_softmax(p, -1), T(t)),
        "ce_int": lambda p, t: nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(p, T(t)),
        "ce_probs": lambda p, t: nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(p, T(t)),
        "bce_pw": lambda p, t: nn.BCEWithLogitsLoss(pos_weight=T(_PW))(p, T(t)),
        "seq": lambda p, t: nn.CrossEntropyLoss()(p.permute(0, 2, 1), T(t)),
        "seq_masked_weighted": lambda p, t: nn.CrossEntropyLoss(weight=w, ignore_index=-100)(
            p.permute(0, 2, 1), T(np.where(t[1], t[0], -100))),
        "rows_masked_huber": lambda p, t: (nn.HuberLoss(reduction="none")(p, T(t[0]))
                                           * T(t[1])[..., None]).sum() / (t[1].sum() * 3),
        "ce_masked_weighted": lambda p, t: nn.CrossEntropyLoss(weight=w, ignore_index=-100)(
            p, T(np.where(t[1], t[0], -100))),
        "rows_masked_huber_2d": lambda p, t: (nn.HuberLoss(reduction="none")(p, T(t[0]))
                                              * T(t[1])[..., None]).sum() / (t[1].sum() * 5),
    }


CASES = {  # name: (loss, pred, target, numpy value)
    "mae": (L.mean_absolute_error, _reg_p, _reg_t, lambda p, t: np.mean(np.abs(p - t))),
    "huber": (L.huber_with(0.7), _reg_p, _reg_t, lambda p, t: np.mean(_np_huber(p - t, 0.7))),
    "hinge": (L.hinge, _hinge_z, _hinge_t, lambda z, t: np.mean(np.maximum(0, 1 - t * z))),
    "kl": (L.kl_divergence, _kl_z, _kl_q, lambda z, q: np.sum(
        np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0) - q * _np_log_softmax(z)) / 4),
    "ce_int": (L.softmax_cross_entropy_with(label_smoothing=0.1, weights=W3), _ce_z, _ce_y,
               lambda z, y: _np_smooth_weighted_ce(z, np.eye(3)[y], W3, 0.1, W3[y].sum())),
    "ce_probs": (L.softmax_cross_entropy_with(label_smoothing=0.1, weights=W3), _ce_z, _ce_q,
                 lambda z, q: _np_smooth_weighted_ce(z, q, W3, 0.1, 4)),
    "bce_pw": (L.sigmoid_binary_cross_entropy_with(pos_weight=_PW), _bce_z, _bce_t,
               lambda z, t: _np_bce_pos_weight(z, t, _PW)),
    "seq": (L.softmax_cross_entropy, _seq_z, _seq_y,
            lambda z, y: -np.mean(np.take_along_axis(_np_log_softmax(z), y[..., None], -1))),
    "seq_masked_weighted": (
        L.masked(L.softmax_cross_entropy_with(weights=W3)), _seq_z, (_seq_y_pad, _seq_m),
        lambda z, t: _np_masked_weighted_ce(z, *t)),
    "rows_masked_huber": (L.masked(L.huber), _rows_p, (_rows_t, _seq_m),
                          lambda p, t: np.sum(_np_huber(p - t[0], 1.0)[t[1]]) / (3 * 3)),
    # the masked cases again on 2-d shapes the three-way checks share (see THREE_WAY)
    "ce_masked_weighted": (
        L.masked(L.softmax_cross_entropy_with(weights=W3)), _ce_z, (_ce_y_pad, _ce_m),
        lambda z, t: _np_masked_weighted_ce(z, *t)),
    "rows_masked_huber_2d": (L.masked(L.huber), _reg_p, (_reg_t, _ce_m[:3]),
                             lambda p, t: np.sum(_np_huber(p - t[0], 1.0)[t[1]]) / (2 * 5)),
}


def _np_grad(f, p, t, h=1e-6):
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        e = np.zeros_like(p)
        e[i] = h
        g[i] = (f(p + e, t) - f(p - e, t)) / (2 * h)
    return g


def _as_jax(target, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype) if np.asarray(a).dtype.kind == "f"
                        else jnp.asarray(a), target, is_leaf=lambda a: isinstance(a, np.ndarray))


@functools.lru_cache(maxsize=None)
def _float64_value_and_grad(case):
    """The manual value and gradient of ``CASES[case]`` in float64, jitted (one compile, not
    one per primitive) and computed once for the NumPy and the PyTorch comparisons."""
    loss, pred, target, _ = CASES[case]

    def f(p, t):
        value, res = loss.fwd(p, t)
        return value, loss.bwd(res, 1.0)

    with jax.enable_x64(True):
        return tuple(np.asarray(a) for a in jax.jit(f)(jnp.asarray(pred),
                                                       _as_jax(target, jnp.float64)))


# Three-way checked: every loss and setting, on the 2-d shapes the tests above use (JAX
# compiles each primitive once per shape: a new shape costs about a second). The 3-d
# cases ("seq", "seq_masked_weighted", "rows_masked_huber") run the same per-position code
# as their 2-d twins and, with "ce_probs" (the probability targets of
# test_softmax_ce_three_way with weights), are compared with NumPy (values and central
# differences) and PyTorch in float64 below.
THREE_WAY = sorted(set(CASES) - {"seq", "seq_masked_weighted", "rows_masked_huber", "ce_probs"})
REFERENCE = sorted(set(CASES) - {"ce_masked_weighted", "rows_masked_huber_2d"})  # 3-d twins


@pytest.mark.parametrize("case", THREE_WAY)
def test_new_losses_three_way(case):
    loss, pred, target, _ = CASES[case]
    assert_loss_correct(loss, jnp.asarray(pred, jnp.float32), _as_jax(target, jnp.float32))


def test_new_losses_equal_numpy_definitions_in_float64():
    for case in REFERENCE:
        loss, pred, target, np_value = CASES[case]
        value, grad = _float64_value_and_grad(case)
        np.testing.assert_allclose(value, np_value(pred, target), rtol=1e-12, err_msg=case)
        # NumPy central differences: h = 1e-6 gives ~1e-10 absolute error here
        np.testing.assert_allclose(grad, _np_grad(np_value, pred, target), rtol=1e-6,
                                   atol=1e-8, err_msg=case)


def test_new_losses_equal_pytorch_in_float64():
    torch = pytest.importorskip("torch")
    funcs = _torch_cases(torch)
    for case in REFERENCE:
        loss, pred, target, _ = CASES[case]
        value, grad = _float64_value_and_grad(case)
        p = torch.tensor(pred, requires_grad=True)
        ref = funcs[case](p, target)
        ref.backward()
        np.testing.assert_allclose(value, ref.item(), rtol=1e-12, err_msg=case)
        np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-10, atol=1e-15, err_msg=case)
    with jax.enable_x64(True):
        # PyTorch's ignore_index, and its gradient at the kinks: 0 for |d| at d = 0 and
        # for relu(1 - t z) at t z = 1, as fnnet's backward and jax.grad
        ign = L.softmax_cross_entropy_with(ignore_index=-100)
        y = np.where(_seq_m, _seq_y, -100)
        p = torch.tensor(_seq_z, requires_grad=True)
        ref = torch.nn.CrossEntropyLoss()(p.permute(0, 2, 1), torch.as_tensor(y))
        ref.backward()
        value, res = ign.fwd(jnp.asarray(_seq_z), jnp.asarray(y))
        np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
        np.testing.assert_allclose(ign.bwd(res, 1.0), p.grad.numpy(), rtol=1e-10, atol=1e-15)
        at_kink = np.array([[1.0], [-1.0], [0.5]])
        for loss, ref_fn, t in [(L.mean_absolute_error, torch.nn.L1Loss(), at_kink),
                                (L.hinge, lambda p, t: torch.relu(1 - t * p).mean(),
                                 np.array([[1.0], [-1.0], [1.0]]))]:
            p = torch.tensor(at_kink, requires_grad=True)
            ref_fn(p, torch.as_tensor(t)).backward()
            np.testing.assert_array_equal(loss.bwd(loss.fwd(jnp.asarray(at_kink),
                                                            jnp.asarray(t))[1], 1.0),
                                          p.grad.numpy())


@pytest.mark.parametrize("loss,pred,target,expected", [
    # |d| at d = 0: subgradient 0 (as L1Loss), not jnp.abs's 1
    (L.mean_absolute_error, [1.0, -2.0, 0.5], [1.0, -1.0, 0.5], [0.0, -1.0, 0.0]),
    # hinge at t z = 1: 0 (as relu at 0); t z = 2: flat; t z = 0.5: -t
    (L.hinge, [1.0, -1.0, 2.0, 0.5], [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -1.0]),
    # Huber at |d| = delta: both pieces agree, d
    (L.huber_with(0.5), [1.0, -1.0, 0.0], [0.5, -0.5, 0.0], [0.5, -0.5, 0.0]),
])
def test_kinks_manual_equals_jax_grad(loss, pred, target, expected):
    z, t = jnp.array(pred)[:, None], jnp.array(target)[:, None]
    manual, auto = jax.jit(lambda z: (loss.bwd(loss.fwd(z, t)[1], 1.0),
                                      jax.grad(lambda z: loss.fwd(z, t)[0])(z)))(z)
    np.testing.assert_array_equal(manual, auto)
    np.testing.assert_allclose(manual[:, 0], np.array(expected) / len(pred), rtol=1e-7)


# --- invalid labels are loud (never dropped) ---------------------------------------

def test_out_of_range_labels_raise_when_concrete():
    z = jnp.zeros((4, 3))
    for bad in ([0, 3, 1, 2], [0, -1, 1, 2]):
        with pytest.raises(ValueError, match=r"softmax_cross_entropy: integer labels must be "
                                             r"class indices in \[0, 3\).*got 1 invalid"):
            L.softmax_cross_entropy.fwd(z, jnp.array(bad))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy\(label_smoothing=0\.1\): .*"
                                         r"got 2 invalid target\(s\), values \{-100, 7\}, the "
                                         r"first at index \(1,\)"):
        L.softmax_cross_entropy_with(label_smoothing=0.1).fwd(z, jnp.array([0, 7, -100, 1]))
    with pytest.raises(ValueError, match=r"hinge: targets must be -1 or \+1.*2 \* y - 1"):
        L.hinge.fwd(jnp.zeros((4, 1)), jnp.array([[0.0], [1.0], [1.0], [0.0]]))


def test_out_of_range_labels_give_nan_loss_and_gradient_under_jit():
    z = jax.random.normal(jax.random.key(0), (4, 3))
    labels = jnp.array([0, 2, 3, 1])  # one label out of range
    loss = L.softmax_cross_entropy

    @jax.jit
    def manual_and_auto(z, y):
        value, res = loss.fwd(z, y)
        return value, loss.bwd(res, 1.0), jax.grad(lambda z: loss.fwd(z, y)[0])(z)

    value, grad, auto = manual_and_auto(z, labels)
    # the hand-written gradient is NaN everywhere; jax.grad's (the referee) is NaN in
    # every valid row (XLA turns 0 * NaN for the invalid label's zero one-hot into 0)
    assert np.isnan(value) and np.all(np.isnan(grad)) and np.all(np.isnan(auto[:2]))
    value, grad, _ = manual_and_auto(z, labels.at[2].set(0))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # a model trained on such a batch: the loss is NaN, nothing is silently skipped
    net = fn.serial(fn.Dense(3))
    params = net.init(jax.random.key(1), (2,))
    value, grads = jax.jit(fn.value_and_grad(net, L.softmax_cross_entropy))(
        params, jnp.ones((4, 2)), labels)
    assert np.isnan(value) and all(np.all(np.isnan(g)) for g in jax.tree.leaves(grads))


def test_masked_positions_are_never_read():
    z = jnp.asarray(_ce_z, jnp.float32)
    mask = jnp.asarray(_ce_m)
    loss = L.masked(L.softmax_cross_entropy)
    a = loss.fwd(z, (jnp.array([0, -5, 1, 1]), mask))[0]   # invalid label where masked
    b = loss.fwd(z, (jnp.array([0, 2, 1, 1]), mask))[0]
    logp = _np_log_softmax(_ce_z)
    flat = -np.mean(logp[[0, 2, 3], [0, 1, 1]])
    np.testing.assert_allclose(a, flat, rtol=1e-6)
    np.testing.assert_allclose(b, flat, rtol=1e-6)
    # every position masked: loss 0 and gradient 0 (a padding-only batch adds nothing)
    value, res = loss.fwd(z, (jnp.zeros((4,), jnp.int32), jnp.zeros((4,), bool)))
    assert float(value) == 0.0 and not np.any(loss.bwd(res, 1.0))


# --- sequences and masks ------------------------------------------------------------

def test_masked_target_goes_through_fit_and_evaluate():
    """MaskedTarget looks like one array to fit (shape, minibatch indexing) and to metrics."""
    net = fn.serial(fn.Dense(3))
    x = jax.random.normal(jax.random.key(0), (8, 2, 2))
    labels = jax.random.randint(jax.random.key(1), (8, 2), 0, 3)
    mask = jnp.arange(16).reshape(8, 2) % 3 != 0
    y = L.MaskedTarget(jnp.where(mask, labels, -1), mask)   # padding label -1 is never read
    assert y.shape == (8, 2) and y[jnp.array([0, 3])].mask.shape == (2, 2)
    loss = L.masked(L.softmax_cross_entropy)
    params = net.init(jax.random.key(2), (2, 2))

    def mean_logit(pred, y):  # a user metric function: fit and evaluate record it
        return jnp.mean(pred)

    params, _, history = fn.fit(net, loss, fn.optim.sgd(0.5), params, x, y, epochs=2,
                                batch_size=4, key=jax.random.key(3),
                                metrics=("loss", "accuracy", mean_logit))
    assert np.all(np.isfinite(history["loss"])) and history["mean_logit"].shape == (2,)
    logit_max = fn.metrics.named_metric("logit_max", lambda p, y: jnp.max(p))
    out = fn.evaluate(net, loss, params, x, y,
                      metrics=("loss", "accuracy", "top_2_accuracy", mean_logit, logit_max))
    logits = np.asarray(fn.apply(net, params, x), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    m, lab = np.asarray(mask), np.asarray(labels)
    true = np.take_along_axis(logits, lab[..., None], -1)
    assert out["loss"] == pytest.approx(-np.take_along_axis(logp, lab[..., None], -1)[..., 0][m]
                                        .mean(), rel=1e-5)
    assert out["accuracy"] == pytest.approx(np.mean((logits.argmax(-1) == lab)[m]))
    assert out["top_2_accuracy"] == pytest.approx(np.mean((np.sum(logits > true, -1) < 2)[m]))
    assert out["mean_logit"] == pytest.approx(np.mean(logits), rel=1e-5)
    assert out["logit_max"] == pytest.approx(np.max(logits), rel=1e-6)
    assert history["accuracy"][-1] == pytest.approx(out["accuracy"])  # after the last epoch
    assert history["mean_logit"][-1] == pytest.approx(np.mean(logits), rel=1e-5)


def test_sequence_loss_is_the_mean_over_all_positions():
    z, y, q = jnp.asarray(_seq_z, jnp.float32), jnp.asarray(_seq_y), jnp.asarray(_ce_q[::-1])

    @jax.jit
    def seq_and_flat(z, y, q):
        q = q.reshape(2, 2, 3)
        return [(loss.fwd(z, t)[0], loss.fwd(z.reshape(4, 3), t.reshape(4, *t.shape[2:]))[0])
                for loss, t in [(L.softmax_cross_entropy, y), (L.kl_divergence, q)]]

    for seq, flat in seq_and_flat(z, y, q):
        np.testing.assert_allclose(seq, flat, rtol=1e-6)


def test_mask_errors_are_clear():
    z = jnp.zeros((2, 4, 3))
    loss = L.masked(L.softmax_cross_entropy)
    with pytest.raises(ValueError, match=r"masked\(softmax_cross_entropy\): mask shape \(2, 4, 3\) "
                                         r"does not fit.*must be \(2, 4\)"):
        loss.fwd(z, (jnp.zeros((2, 4), jnp.int32), jnp.ones((2, 4, 3), bool)))
    with pytest.raises(ValueError, match=r"masked\(mean_squared_error\): mask shape \(4,\).*"
                                         r"must be \(2, 4, 3\) or \(2, 4\)"):
        L.masked(L.mean_squared_error).fwd(z, (z, jnp.ones((4,), bool)))
    with pytest.raises(TypeError, match=r"masked\(softmax_cross_entropy\): the target must be "
                                        r"MaskedTarget\(target, mask\) or a pair \(target, mask\), "
                                        r"got ArrayImpl of shape \(2, 4\)"):
        loss.fwd(z, jnp.zeros((2, 4), jnp.int32))
    custom = fn.losses.named_loss("my_loss", L.mean_squared_error.fwd, L.mean_squared_error.bwd)
    with pytest.raises(TypeError, match="masked: expected one of fnnet's built-in losses"):
        L.masked(custom)
    with pytest.raises(ValueError, match="empty batch"):
        L.huber.fwd(jnp.zeros((0, 3)), jnp.zeros((0, 3)))


# --- settings, names, check_loss ----------------------------------------------------

def test_equal_settings_give_equal_losses_and_readable_names():
    a = L.softmax_cross_entropy_with(label_smoothing=0.1, weights=[1, 2, 3])
    b = L.softmax_cross_entropy_with(label_smoothing=0.1, weights=np.array([1.0, 2.0, 3.0]))
    assert a == b and hash(a) == hash(b)  # jit caches keyed on the loss are reused
    assert a != L.softmax_cross_entropy_with(label_smoothing=0.2, weights=[1, 2, 3])
    assert a.name == "softmax_cross_entropy(label_smoothing=0.1, weights=[1, 2, 3])"
    assert L.softmax_cross_entropy_with() is L.softmax_cross_entropy
    assert L.sigmoid_binary_cross_entropy_with() is L.sigmoid_binary_cross_entropy
    assert L.huber_with(1.0) == L.huber and L.huber.name == "huber(delta=1)"
    assert L.masked(L.huber).name == "masked(huber(delta=1))"
    for bad, match in [(lambda: L.softmax_cross_entropy_with(label_smoothing=1.0), r"\[0, 1\)"),
                       (lambda: L.softmax_cross_entropy_with(weights=[1, -1]), "non-negative"),
                       (lambda: L.huber_with(0.0), r"delta must be in \(0, inf\)"),
                       (lambda: L.sigmoid_binary_cross_entropy_with(pos_weight=[[1.0]]), "1-d")]:
        with pytest.raises(ValueError, match=match):
            bad()
    with pytest.raises(ValueError, match=r"3 class weights for logits with 4 classes"):
        L.softmax_cross_entropy_with(weights=[1, 2, 3]).fwd(jnp.zeros((2, 4)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"pos_weight has 2 entries but the logits \(2, 3\)"):
        L.sigmoid_binary_cross_entropy_with([1, 2]).fwd(jnp.zeros((2, 3)), jnp.zeros((2, 3)))


def test_named_loss_and_check_loss():
    def fwd(p, t):
        d = p - t
        return jnp.sum(d ** 4) / d.size, d

    def bwd(d, g):
        return g * 4 * d ** 3 / d.size

    quartic = L.named_loss("quartic", fwd, bwd)
    assert quartic.name == "quartic" and not hasattr(fwd, "fnnet_name")  # fwd untouched
    assert quartic == L.named_loss("quartic", fwd, bwd)
    p, t = jax.random.normal(jax.random.key(0), (3, 5)), jnp.asarray(_reg_t, jnp.float32)
    report = fn.check_loss(quartic, p, t)
    assert report.ok and report.title == "quartic" and "['pred']" in str(report)
    wrong = L.named_loss("quartic_wrong", fwd, lambda d, g: g * 3 * d ** 3 / d.size)
    report = fn.check_loss(wrong, p, t)
    assert not report.ok and "quartic_wrong" in str(report) and "FAIL" in str(report)
    # a (target, mask) pair, float leaves follow pred's dtype in the float64 part
    assert fn.check_loss(L.masked(L.huber), p, (t, jnp.array([1.0, 0.0, 1.0]))).ok
