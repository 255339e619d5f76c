import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

O = fn.optim
P = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3])}
G = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)) + 0.1 * i, P) for i in range(6)]


@pytest.mark.parametrize("make", [lambda: O.sgd(O.linear_schedule(0.5, 0.1, 4), momentum=0.9)],
                         ids=["momentum-schedule"])
def test_accumulate_equals_the_inner_optimizer_on_mean_gradients(make):
    k = 3
    acc, inner = O.accumulate(make(), k), make()
    s_acc, s_in = acc.init(P), inner.init(P)
    p_acc = p_in = P
    update = jax.jit(acc.update)
    for t, g in enumerate(G):
        u, s_acc = update(g, s_acc, p_acc)
        p_acc = O.apply_updates(p_acc, u)
        if (t + 1) % k:
            for leaf in jax.tree.leaves(u):
                np.testing.assert_array_equal(leaf, 0.0)        # no move between real steps
        else:
            mean = jax.tree.map(lambda *gs: sum(gs) / k, *G[t + 1 - k:t + 1])
            u_in, s_in = inner.update(mean, s_in, p_in)
            p_in = O.apply_updates(p_in, u_in)
        for a, b in zip(jax.tree.leaves(p_acc), jax.tree.leaves(p_in)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(s_acc.count) == 0
    assert int(s_acc.inner_state[-1].count) == 2                  # the inner state counts real steps only
