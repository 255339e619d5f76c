"""fn.mixed_precision (bfloat16/float16 compute, float32 master weights, loss-scaled
hand-written backward) and fn.optim.dynamic_loss_scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.mixed_precision import MixedPrecisionParams
from layer_checks import assert_trees_close

O = fn.optim
NET = fn.serial(fn.Dense(6), fn.Tanh, fn.Dense(3))
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(4, 5)), jnp.float32)
DY = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
LABELS = jnp.array([0, 1, 1, 0])


DENSE = fn.Dense(2)
# Plain arrays instead of init: eager random draws would cost more than the checks.
NET_PARAMS = ({"w": jnp.asarray(RNG.normal(size=(5, 6)) / 2, jnp.float32), "b": jnp.full(6, 0.1)}, (),
              {"w": jnp.asarray(RNG.normal(size=(6, 3)) / 2, jnp.float32), "b": jnp.full(3, -0.1)})
DENSE_PARAMS = {"w": jnp.asarray(RNG.normal(size=(5, 2)), jnp.float32), "b": jnp.array([0.5, -0.5])}


@pytest.fixture(scope="module")
def mp_params():
    return MixedPrecisionParams(NET_PARAMS, jnp.float32(2.0 ** 15))


def test_init_returns_float32_master_params_and_the_loss_scale():
    mp = fn.mixed_precision(NET)
    shapes = jax.eval_shape(lambda k: mp.init(k, (5,)), jax.random.key(0))
    assert isinstance(shapes, MixedPrecisionParams)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), shapes) == jax.tree.map(
        lambda a: (a.shape, a.dtype), MixedPrecisionParams(NET_PARAMS, jnp.float32(0)))
    assert "mixed_precision(serial" in mp.name and "bfloat16" in mp.name


def test_forward_runs_in_bfloat16_and_returns_float32(mp_params):
    y = jax.jit(lambda p, x: fn.apply(fn.mixed_precision(NET), p, x))(mp_params, X)
    bf = jax.tree.map(lambda a: a.astype(jnp.bfloat16), NET_PARAMS)
    want = jax.jit(lambda p, x: fn.apply(NET, p, x))(bf, X.astype(jnp.bfloat16)).astype(jnp.float32)
    f32 = jax.jit(lambda p, x: fn.apply(NET, p, x))(NET_PARAMS, X)
    assert y.dtype == jnp.float32
    # XLA may keep a fused bfloat16 intermediate in float32 ("excess precision"): equal
    # to the bfloat16 model up to a few bfloat16 ulps (2^-8), and visibly not float32.
    np.testing.assert_allclose(y, want, rtol=2e-2, atol=2e-2)
    assert not np.allclose(y, f32, rtol=1e-4, atol=1e-4)


def test_manual_backward_equals_jax_vjp_and_jit(mp_params):
    mp = fn.mixed_precision(NET)
    dy = DY

    def both(p, x, d):
        manual = mp.bwd(mp.fwd(p, x)[1], d)
        return manual, jax.vjp(lambda p, x: mp.fwd(p, x)[0], p, x)[1](d)

    (dparams, dx), (ref_p, ref_x) = jax.jit(both)(mp_params, X, dy)
    # Same bfloat16 arithmetic on both paths (scaling by 2^15 commutes with rounding);
    # they differ only where the manual and autodiff rules order a bfloat16 sum
    # differently: a few bfloat16 ulps (2^-8 relative each) of the largest entry.
    assert_trees_close(dparams, ref_p, 2e-2, "mixed_precision dparams")
    assert_trees_close(dx, ref_x, 2e-2, "mixed_precision dx")
    assert float(dparams.loss_scale) == 0.0 and dx.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(dparams))
    # jit vs eager (one Dense: eager bfloat16 ops compile one by one): XLA may keep
    # bfloat16 intermediates in float32 inside a fusion, so bfloat16 tolerance again.
    mp1 = fn.mixed_precision(DENSE)
    p1 = MixedPrecisionParams(DENSE_PARAMS, jnp.float32(2.0 ** 15))
    d1 = dy[:, :2]
    run = lambda p, x, d: mp1.bwd(mp1.fwd(p, x)[1], d)            # noqa: E731
    assert_trees_close(run(p1, X, d1), jax.jit(run)(p1, X, d1), 2e-2, "mixed_precision jit vs eager")


def test_float64_finite_differences_of_the_scaled_backward():
    # compute_dtype=float64: the scaling plumbing (seed times S, unscale) in full precision.
    # (The wrapper's logic does not depend on the model: one Dense keeps it cheap.)
    with jax.enable_x64(True):
        mp = fn.mixed_precision(DENSE, jnp.float64, output_dtype=jnp.float64, loss_scale=2.0 ** 10)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                              MixedPrecisionParams(DENSE_PARAMS, 2.0 ** 10))
        report = fn.check_layer(mp, params, X[:2].astype(jnp.float64), num_directions=2)
    assert report.ok, str(report)


def test_loss_scaling_rescues_float16_gradients_that_underflow():
    # dy ~ 1e-8 is below float16's smallest subnormal (6e-8): without scaling it is 0 in float16.
    dy = 1e-8 * np.asarray(DY[:, :2], np.float64)
    want = np.asarray(X, np.float64).T @ dy                               # Dense: dw = x^T dy
    mp = fn.mixed_precision(DENSE, jnp.float16)
    grads = jax.jit(lambda s: fn.vjp(mp, MixedPrecisionParams(DENSE_PARAMS, s), X)[1](
        jnp.asarray(dy, jnp.float32))[0].params["w"])
    for scale, ok in [(1.0, False), (2.0 ** 15, True)]:
        got = grads(jnp.float32(scale))
        close = np.allclose(got, want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
        assert close == ok, (scale, got, want)


def _train(mp, opt, params, steps):
    vg = fn.value_and_grad(mp, fn.losses.softmax_cross_entropy)

    def step(carry, _):
        p, s = carry
        value, g = vg(p, X, LABELS)
        u, s = opt.update(g, s, p)
        return (O.apply_updates(p, u), s), value

    (params, state), values = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(
        (params, opt.init(params)))
    return params, state, values


def test_dynamic_loss_scale_backs_off_from_overflow_then_trains():
    # float16 overflows above 65504: an initial scale of 2^24 makes the first backward inf.
    mp = fn.mixed_precision(fn.serial(DENSE), jnp.float16, loss_scale=2.0 ** 24)
    params = MixedPrecisionParams((DENSE_PARAMS,), jnp.float32(2.0 ** 24))
    opt = O.dynamic_loss_scale(O.adam(0.05), growth_interval=1000)
    out, state, values = _train(mp, opt, params, 30)
    assert 0 < int(state.skipped) < 15 and float(state.loss_scale) < 2.0 ** 24
    assert float(out.loss_scale) == float(state.loss_scale)           # written into the params
    assert np.all(np.isfinite(values)) and values[-1] < 0.5 * values[0]
    assert np.all(np.isfinite(np.concatenate([np.ravel(a) for a in jax.tree.leaves(out)])))
    # the skipped steps left the params alone: the inner Adam counted only the real steps
    assert int(state.inner_state[0].count) == 30 - int(state.skipped)


def test_dynamic_loss_scale_skips_non_finite_steps_and_grows_after_the_interval():
    # Also without a mixed-precision model: then it only skips non-finite steps.
    opt = O.dynamic_loss_scale(O.sgd(0.1), growth_interval=2)
    p = {"w": jnp.ones(2)}
    update = jax.jit(opt.update)
    state = opt.init(p)
    u, state = update({"w": jnp.array([1.0, jnp.nan])}, state, p)
    np.testing.assert_array_equal(u["w"], 0.0)
    assert int(state.skipped) == 1 and float(state.loss_scale) == 2.0 ** 14
    assert int(state.inner_state[0].count) == 0                         # inner state untouched
    for good in (1, 0):
        u, state = update({"w": jnp.array([1.0, 2.0])}, state, p)
        np.testing.assert_allclose(u["w"], [-0.1, -0.2])
        assert int(state.good_steps) == good
    assert float(state.loss_scale) == 2.0 ** 15 and int(state.skipped) == 1


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match=r"mixed_precision\(serial.*\): compute_dtype must be a floating dtype"):
        fn.mixed_precision(NET, jnp.int32)
    with pytest.raises(ValueError, match="loss_scale must be a finite number > 0"):
        fn.mixed_precision(NET, loss_scale=0.0)
    with pytest.raises(TypeError, match="params must be the MixedPrecisionParams"):
        fn.mixed_precision(NET).fwd(NET_PARAMS, X)
    params = MixedPrecisionParams(NET_PARAMS, jnp.float32(1.0))
    opt = O.dynamic_loss_scale(O.sgd(0.1))
    with pytest.raises(ValueError, match="dynamic_loss_scale: mixed-precision params need update"):
        opt.update(params, opt.init(params))


BN_NET = fn.serial(fn.Dense(6), fn.BatchNorm(), fn.Relu, fn.Dense(3))


def test_layer_state_in_float32_compute_equals_the_plain_model_bit_for_bit():
    """compute_dtype=float32: every cast is the identity and the loss scale a power of 2,
    so a BatchNorm model wrapped trains exactly like the plain one, state included."""
    key = jax.random.key(0)
    params = BN_NET.init(key, (5,))
    mp = fn.mixed_precision(BN_NET, jnp.float32)
    mp_params = MixedPrecisionParams(params, jnp.float32(2.0 ** 15))
    assert mp.has_state
    state = fn.init_state(mp, mp_params)
    assert jax.tree.structure(state) == jax.tree.structure(fn.init_state(BN_NET, params))
    opt = O.sgd(0.1, momentum=0.9)
    x, y = jnp.tile(X, (4, 1)), jnp.tile(LABELS, 4)
    loss = fn.losses.softmax_cross_entropy
    p1, _, h1, s1 = fn.fit(BN_NET, loss, opt, params, x, y, epochs=3, batch_size=8, key=key,
                           state=fn.init_state(BN_NET, params))
    p2, _, h2, s2 = fn.fit(mp, loss, opt, mp_params, x, y, epochs=3, batch_size=8, key=key,
                           state=state)
    for a, b in zip(jax.tree.leaves((p1, s1, h1["loss"])), jax.tree.leaves((p2.params, s2, h2["loss"]))):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    np.testing.assert_array_equal(fn.apply(mp, p2, x, state=s2), fn.apply(BN_NET, p1, x, state=s1))


def test_layer_state_in_bfloat16_stays_float32_and_trains():
    key = jax.random.key(1)
    mp = fn.mixed_precision(BN_NET)
    params = mp.init(key, (5,))
    state = fn.init_state(mp, params)
    x, y = jnp.tile(X, (4, 1)), jnp.tile(LABELS, 4)
    opt = O.dynamic_loss_scale(O.adam(1e-2))
    p, _, h, s = fn.fit(mp, fn.losses.softmax_cross_entropy, opt, params, x, y, epochs=20,
                        key=key, state=state)
    assert {a.dtype for a in jax.tree.leaves(s)} == {jnp.dtype(jnp.float32)}
    assert not np.array_equal(s[1]["mean"], state[1]["mean"])          # the statistics moved
    assert h["loss"][-1] < h["loss"][0] and np.all(np.isfinite(h["loss"]))
    assert fn.apply(mp, p, x, state=s).dtype == jnp.float32
    with pytest.raises(ValueError, match="has layer state"):
        fn.fit(mp, fn.losses.softmax_cross_entropy, opt, params, x, y, epochs=1, key=key)


def test_layer_state_wrapper_backward_in_float64():
    with jax.enable_x64(True):
        mp = fn.mixed_precision(fn.serial(fn.Dense(4, dtype=jnp.float64),
                                          fn.BatchNorm(dtype=jnp.float64), fn.Tanh),
                                jnp.float64, output_dtype=jnp.float64)
        params = mp.init(jax.random.key(0), (5,))
        x = jnp.asarray(RNG.normal(size=(6, 5)))
        report = fn.check_layer(mp, params, x, key=jax.random.key(1), num_directions=1)
        assert report.ok, report
