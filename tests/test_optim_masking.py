import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

O = fn.optim
NET = fn.serial(fn.Dense(4), fn.LayerNorm(), fn.Relu, fn.Dense(2))
PARAMS = NET.init(jax.random.key(0), (3,))
GRADS = jax.tree.map(lambda p: jnp.linspace(-1.0, 1.0, p.size).reshape(p.shape), PARAMS)
KERNEL = ({"w": True, "b": False}, {"scale": False, "bias": False}, (), {"w": True, "b": False})


def steps(opt, n=1, params=PARAMS):
    state, out = opt.init(params), params
    update = opt.update
    for _ in range(n):
        u, state = update(GRADS, state, out)
        out = O.apply_updates(out, u)
    return out, state


def test_kernel_mask_marks_kernels_and_tables_only():
    assert O.kernel_mask(PARAMS) == KERNEL
    tree = {"emb": {"table": 0}, "rnn": {"w_ih": 0, "w_hh": 0, "b_ih": 0}, "norm": {"scale": 0}}
    assert O.kernel_mask(tree) == {"emb": {"table": True}, "rnn": {"w_ih": True, "w_hh": True, "b_ih": False},
                                   "norm": {"scale": False}}
    with pytest.raises(ValueError, match="kernel_mask: no leaf of params is named 'w', 'w_\\*' or 'table'"):
        O.kernel_mask({"a": jnp.ones(2)})


def test_adamw_with_kernel_mask_decays_kernels_only():
    # one step: AdamW's decoupled decay is -lr * wd * w on the kernels, nothing elsewhere
    masked_run, _ = steps(O.adamw(0.1, weight_decay=0.5, mask=O.kernel_mask))
    plain, _ = steps(O.adamw(0.1, weight_decay=0.0))
    for got, p, w, k in zip(jax.tree.leaves(masked_run), jax.tree.leaves(plain), jax.tree.leaves(PARAMS),
                            jax.tree.leaves(KERNEL)):
        np.testing.assert_allclose(got, p - 0.1 * 0.5 * w if k else p, rtol=1e-6, atol=1e-7)


def test_masked_l2_with_sgd_matches_the_formula():
    opt = O.chain(O.masked(O.add_decayed_weights(0.1), KERNEL), O.sgd(0.5))
    u, _ = opt.update(GRADS, opt.init(PARAMS), PARAMS)
    want = jax.tree.map(lambda g, p, k: -0.5 * (g + (0.1 * p if k else 0.0)), GRADS, PARAMS, KERNEL)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_masked_inner_state_exists_only_for_masked_leaves():
    state = O.masked(O.adam(0.1), KERNEL).init(PARAMS)
    mu = state.inner_state[0].mu
    assert isinstance(mu[0]["b"], O.MaskedNode) and mu[0]["w"].shape == (3, 4)
    assert len(jax.tree.leaves(mu)) == 2
    # unmasked updates pass through unchanged
    u, _ = O.masked(O.adam(0.1), KERNEL).update(GRADS, state, PARAMS)
    np.testing.assert_array_equal(u[1]["scale"], GRADS[1]["scale"])


def test_freeze_keeps_frozen_leaves_exactly_and_trains_the_rest_as_before():
    frozen = jax.tree.map(lambda k: not k, KERNEL)               # freeze every bias and norm parameter
    got, _ = steps(O.chain(O.adamw(0.1, weight_decay=0.1), O.freeze(frozen)))
    free, _ = steps(O.adamw(0.1, weight_decay=0.1))
    for g, f, p, fz in zip(jax.tree.leaves(got), jax.tree.leaves(free), jax.tree.leaves(PARAMS),
                           jax.tree.leaves(frozen)):
        if fz:
            np.testing.assert_array_equal(g, p)
        else:
            np.testing.assert_allclose(g, f, rtol=1e-6)


@pytest.mark.parametrize("mask", [{"w": True}, ({"w": True, "b": False},), lambda p: {"w": True}],
                         ids=["dict", "short-tuple", "callable"])
def test_a_mask_with_another_tree_names_both_trees(mask):
    opt = O.masked(O.add_decayed_weights(0.1), mask)
    with pytest.raises(ValueError, match=r"masked: the mask must have the params' tree structure, one bool "
                                         r"per leaf: expected PyTreeDef\(\(\{'b': \*, 'w': \*\}.*got PyTreeDef"):
        opt.init(PARAMS)


def test_freeze_rejects_a_mismatched_mask_by_name():
    with pytest.raises(ValueError, match="^freeze: the mask must have the params' tree structure"):
        O.freeze({"w": True}).init({"w": jnp.ones(2), "b": jnp.ones(2)})
