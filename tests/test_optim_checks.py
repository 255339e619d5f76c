"""Nothing silent in the optimizers: bad hyperparameters, low-precision params, a state
built for another model, an optimizer passed uncalled. One line per bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

O = fn.optim

# (constructor call, error type, fragment of the message)
CATALOGUE = [
    (lambda: O.sgd(float("inf")), ValueError, "sgd: learning_rate must be finite, got inf"),
    (lambda: O.sgd(float("nan")), ValueError, "sgd: learning_rate must be finite, got nan"),
    (lambda: O.sgd(-0.1), ValueError, "sgd: learning_rate must be >= 0, got -0.1"),
    (lambda: O.sgd("x"), TypeError, "sgd: learning_rate must be a number or a schedule step -> lr, got 'x'"),
    (lambda: O.sgd(None), TypeError, "sgd: learning_rate must be a number or a schedule"),
    (lambda: O.sgd(True), TypeError, "sgd: learning_rate must be a number"),
    (lambda: O.sgd(np.array([0.1, 0.2])), TypeError, "sgd: learning_rate must be a scalar, got an array of shape (2,)"),
    (lambda: O.sgd(0.1, momentum="0.9"), TypeError, "sgd: momentum must be a number, got '0.9'"),
    (lambda: O.sgd(0.1, momentum=float("inf")), ValueError, "sgd: momentum must be finite"),
    (lambda: O.sgd(0.1, nesterov="yes"), TypeError, "sgd: nesterov must be True or False"),
    (lambda: O.adam(eps=0.0), ValueError, "adam: eps must be > 0, got 0.0; eps = 0 turns an exactly-zero gradient"),
    (lambda: O.adamw(eps=0.0), ValueError, "adamw: eps must be > 0"),
    (lambda: O.adam(b2=float("nan")), ValueError, "adam: b2 must be finite"),
    (lambda: O.adam(jnp.float32(jnp.inf)), ValueError, "adam: learning_rate must be finite"),
    (lambda: O.adamw(weight_decay=float("inf")), ValueError, "adamw: weight_decay must be finite"),
    (lambda: O.adam(weight_decay="0.1"), TypeError, "adam: weight_decay must be a number"),
    (lambda: O.rmsprop(eps=0.0), ValueError, "rmsprop: eps must be > 0"),
    (lambda: O.rmsprop(0.01, centered=1), TypeError, "rmsprop: centered must be True or False"),
    (lambda: O.adagrad(eps=0.0), ValueError, "adagrad: eps must be > 0"),
    (lambda: O.adagrad(initial_accumulator_value=float("inf")), ValueError, "adagrad: initial_accumulator_value must be finite"),
    (lambda: O.clip_by_global_norm(float("inf")), ValueError, "clip_by_global_norm: max_norm must be finite"),
    (lambda: O.scale(float("nan")), ValueError, "scale: factor must be finite"),
    (lambda: O.linear_schedule(1.0, 0.1, 0), ValueError, "linear_schedule: transition_steps must be > 0"),
    (lambda: O.exponential_decay(0.1, 10, float("inf")), ValueError, "exponential_decay: decay_rate must be finite"),
    (lambda: O.sgd(O.constant_schedule(float("inf"))), ValueError, "constant_schedule: value must be finite"),
    (lambda: O.accumulate(O.sgd(0.1), 0), ValueError, "accumulate: k must be an int >= 1, got 0"),
    (lambda: O.accumulate(O.sgd(0.1), 2.5), ValueError, "accumulate: k must be an int >= 1, got 2.5"),
    (lambda: O.accumulate(O.sgd(0.1), True), ValueError, "accumulate: k must be an int >= 1, got True"),
    (lambda: O.accumulate(O.sgd, 2), TypeError, "accumulate: got the optimizer constructor fn.optim.sgd itself"),
    (lambda: O.masked(O.add_decayed_weights(0.1), {"w": 1}), TypeError, "masked: every mask leaf must be a concrete bool"),
    (lambda: O.chain(O.sgd(0.1), 0.1), TypeError, "chain: transform 1: optimizer must be an object with init and update"),
    (lambda: O.dynamic_loss_scale(O.sgd(0.1), backoff_factor=1.0), ValueError, r"dynamic_loss_scale: backoff_factor must be in (0, 1)"),
    (lambda: O.dynamic_loss_scale(O.sgd(0.1), growth_interval=0), ValueError, "dynamic_loss_scale: growth_interval must be an int >= 1"),
    (lambda: O.check_optimizer(O.sgd, "fit"), TypeError, "fit: got the optimizer constructor fn.optim.sgd itself, not an optimizer; call it"),
    (lambda: O.check_optimizer(O.adam, "train_step"), TypeError, "fn.optim.adam(learning_rate)"),
    (lambda: O.check_optimizer(lambda lr: O.sgd(lr), "fit"), TypeError, "fit: optimizer must be an object with init and update"),
    (lambda: O.check_optimizer(0.1, "fit"), TypeError, "fit: optimizer must be an object with init and update (fnnet's or optax's contract, e.g. fn.optim.sgd(0.1)), got float"),
]


@pytest.mark.parametrize("make,err,fragment", CATALOGUE, ids=[c[2][:48] for c in CATALOGUE])
def test_bad_input_catalogue(make, err, fragment):
    with pytest.raises(err) as info:
        make()
    assert fragment in str(info.value)


def test_check_optimizer_returns_a_good_optimizer():
    opt = O.sgd(0.1)
    assert O.check_optimizer(opt, "fit") is opt


PARAMS16 = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]], jnp.float16), "b": jnp.array([0.0, 1.0], jnp.float16)}
# |g| ~ 1e-4: g^2 ~ 1e-8 is below float16's smallest subnormal (6e-8), so float16 moments give v = 0.
GRADS16 = {"w": jnp.array([[1e-4, -2e-4], [3e-4, 0.0]], jnp.float16), "b": jnp.array([-1e-4, 5e-5], jnp.float16)}


@pytest.mark.parametrize("make", [lambda: O.adam(1e-2), lambda: O.adamw(1e-2), lambda: O.rmsprop(1e-2),
                                  lambda: O.adagrad(1e-2), lambda: O.sgd(1e-2, momentum=0.9)],
                         ids=["adam", "adamw", "rmsprop", "adagrad", "momentum"])
def test_float16_params_keep_float32_state_and_match_a_float32_run(make):
    opt = make()
    state = opt.init(PARAMS16)
    for leaf in jax.tree.leaves(state):
        assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
    p32, g32 = (jax.tree.map(lambda a: a.astype(jnp.float32), t) for t in (PARAMS16, GRADS16))
    u16, _ = opt.update(GRADS16, state, PARAMS16)
    u32, _ = opt.update(g32, opt.init(p32), p32)
    for a, b in zip(jax.tree.leaves(u16), jax.tree.leaves(u32)):
        assert a.dtype == jnp.float16 and np.all(np.isfinite(np.asarray(a, np.float32)))
        # equal to the float32 run up to float16 rounding of the update (relative 2^-11)
        np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=2 ** -10, atol=1e-7)
    new = O.apply_updates(PARAMS16, u16)
    assert all(a.dtype == jnp.float16 for a in jax.tree.leaves(new))


def test_float16_adam_first_step_is_lr_times_sign():
    # The float16 failure mode was -inf here: v underflowed to 0 and eps (1e-8) to 0 too.
    u, _ = O.adam(1e-2).update(GRADS16, O.adam(1e-2).init(PARAMS16))
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), [[-1e-2, 1e-2], [-1e-2, 0.0]], rtol=2e-3)


SMALL = ({"w": jnp.zeros((2, 1)), "b": jnp.zeros(1)},)   # params of serial(Dense(1)) on 2 inputs
BIG = ({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)},)     # params of serial(Dense(3))


@pytest.mark.parametrize("make,name", [(lambda: O.sgd(0.1, momentum=0.9), "sgd"), (lambda: O.adam(), "adam"),
                                       (lambda: O.rmsprop(), "rmsprop"), (lambda: O.adagrad(), "adagrad"),
                                       (lambda: O.accumulate(O.sgd(0.1), 2), "accumulate")])
def test_a_state_built_for_another_model_is_an_error_not_a_broadcast(make, name):
    opt = make()
    small, big = SMALL, BIG
    state = opt.init(small)                                  # w (2, 1), b (1,): broadcastable to (2, 3), (3,)
    with pytest.raises(ValueError, match=rf"^{name}: optimizer state was built for params of a different "
                                         r"structure/shape: expected shape \(3,\) at \[0\]\['b'\], got \(1,\)"
                                         r".*call opt.init\(params\) for this model"):
        jax.jit(opt.update)(big, state, big)


def test_a_state_with_another_tree_names_both_trees():
    opt = O.adam()
    state = opt.init({"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"adam: optimizer state was built for params of a different "
                                         r"structure/shape: expected the tree .*'v'.*, got .*'w'"):
        opt.update({"v": jnp.zeros(2)}, state)


def test_a_state_from_another_optimizer_kind_is_named():
    g = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="sgd: expected a TraceState in the optimizer state, got ScaleByAdamState"):
        O.sgd(0.1, momentum=0.9).update(g, O.adam().init(g))
