"""DP-SGD: differentially private training (Abadi et al. 2016), by hand.

Each step clips every example's gradient to the norm ``C`` and adds Gaussian
noise of standard deviation ``sigma C`` to the sum::

    g_i   = gradient of example i's own loss          (fnnet.per_example)
    c_i   = min(1, C / ||g_i||)                          (1 when g_i = 0)
    g~    = (sum_i c_i g_i + N(0, sigma^2 C^2 I)) / n    n = batch size

then hands ``g~`` to any optimizer (``fn.optim.sgd`` gives DP-SGD, ``adam``
DP-Adam). Per-example norms are invisible to an optimizer's ``update`` (it
only sees the batch gradient), so DP lives in its own step function,
:func:`train_step`, beside :func:`fnnet.train_step`.

No per-example gradient is ever formed (for layers with norm rules: Dense,
Conv2D, ...): one forward; one backward that yields the norms ``||g_i||`` from
residuals and cotangents (:func:`fnnet.per_example_grad_norms`) and records each
layer's output cotangent ``dy``; then each layer's ``bwd`` once more on its own
``dy`` with example ``i``'s rows scaled by ``c_i`` (its ``dx`` unused). Every
backward is linear in ``dy`` and examples do not interact, so this gives
``sum_i c_i g_i`` ("ghost clipping", Li et al. 2022, with the book-keeping of Bu
et al. 2022: no second backward chain). Memory stays that of ordinary training.

In ``fit``: ``fn.fit(model, loss, opt, params, x, y, ..., key=key,
dp=fn.dp.DPConfig(l2_norm_clip=1.0, noise_multiplier=1.1))`` trains with this
step instead of the ordinary one: same minibatches, same history, same exact
resume (``initial_epoch=``) as any run. Step ``i`` of epoch ``e`` gets the key
``jax.random.split(k_steps, n_batches)[i]`` with ``k_perm, k_steps =
jax.random.split(jax.random.fold_in(key, e))`` (full batch: ``fold_in(key, e)``
itself), so a hand-written loop of :func:`train_step` with those keys gives the
same run.

The noise comes from an explicit key: ``step(..., key=k)`` splits ``k`` into
one key for the noise and one for the model's random layers (Dropout), so the
same key gives the same step.

**Privacy accounting is not included**: this module does the mechanism (clip
and noise); the (epsilon, delta) guarantee of a run depends on the sampling
rate, the number of steps and ``noise_multiplier``, and must be computed with an
accountant (e.g. the RDP accountant of TensorFlow Privacy or Opacus). Note that
``fit``'s minibatches are shuffled without replacement (a permutation per
epoch), not Poisson-sampled as the standard analysis assumes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .core import Layer, Loss
from .optim.base import apply_updates
from .per_example import scaled_sum, walk

__all__ = ["DPConfig", "clipped_grad", "private_grad", "train_step", "fit_step", "as_config"]


class DPConfig(NamedTuple):
    """DP-SGD's two settings, for ``fn.fit(..., dp=fn.dp.DPConfig(1.0, 1.1))``:
    each example's gradient clipped to ``l2_norm_clip``, Gaussian noise of standard
    deviation ``noise_multiplier * l2_norm_clip`` added to their sum. Hashable: the
    compiled run is cached per setting (new values compile once)."""

    l2_norm_clip: float = 1.0
    noise_multiplier: float = 1.1


def _check_settings(where, l2_norm_clip, noise_multiplier=0.0):
    if isinstance(l2_norm_clip, bool) or not isinstance(l2_norm_clip, (int, float)) \
            or not l2_norm_clip > 0:
        raise ValueError(f"{where}: l2_norm_clip must be a positive number, got {l2_norm_clip!r}")
    if isinstance(noise_multiplier, bool) or not isinstance(noise_multiplier, (int, float)) \
            or not noise_multiplier >= 0:
        raise ValueError(f"{where}: noise_multiplier must be a number >= 0, got "
                         f"{noise_multiplier!r}")


def _stateless(model: Layer, where: str):
    if getattr(model, "has_state", False):
        raise ValueError(f"{where}: {model.name} has layer state (BatchNorm), whose batch "
                         f"statistics mix the examples; DP-SGD needs per-example gradients. "
                         f"Use LayerNorm instead.")


def clipped_grad(model: Layer, loss: Loss, *, l2_norm_clip: float = 1.0):
    """``f(params, x, y, *, key=None) -> (value, grad, norms)``, no noise.

    ``grad = sum_i min(1, C / ||g_i||) g_i / n``: the mean of the clipped
    per-example gradients of each example's own loss; ``norms`` ``(n,)`` are
    the unclipped ``||g_i||``; ``value`` is the mean of the examples' own losses
    (the batch loss for a mean loss). ``key`` is for random layers only.
    """
    where = "dp.clipped_grad"
    _check_settings(where, l2_norm_clip)
    _stateless(model, where)
    clip = float(l2_norm_clip)

    def f(params, x, y, *, key=None):
        values, sq, node, _ = walk(model, loss, params, x, y, key=key, mode="sqnorm",
                                   where=where)
        n = values.shape[0]
        norms = jnp.sqrt(sq) if sq is not None else jnp.zeros((n,), values.dtype)
        factor = clip / jnp.maximum(norms, clip)          # = min(1, C / norm), 1 at norm 0
        total = scaled_sum(node, factor)
        grad = jax.tree.map(lambda g: (g / n).astype(g.dtype), total)
        return jnp.mean(values), grad, norms

    return f


def private_grad(model: Layer, loss: Loss, *, l2_norm_clip: float = 1.0,
                 noise_multiplier: float = 1.1):
    """``f(params, x, y, *, key) -> (value, grad, norms)``: the DP-SGD gradient.

    ``grad = (sum_i c_i g_i + noise_multiplier * C * z) / n`` with ``z`` standard
    normal per params entry, drawn from ``key`` (required): ``key`` is split into
    ``(noise key, model key)``; each params leaf gets its own noise key
    (``jax.random.split(noise key, number of leaves)``, in ``jax.tree.leaves``
    order).
    """
    where = "dp.private_grad"
    _check_settings(where, l2_norm_clip, noise_multiplier)
    clipped = clipped_grad(model, loss, l2_norm_clip=l2_norm_clip)
    std = float(noise_multiplier) * float(l2_norm_clip)

    def f(params, x, y, *, key):
        if key is None:
            raise ValueError(f"{where}: DP-SGD noise needs an explicit PRNG key; pass "
                             f"key=jax.random.key(step) (a fresh key every step)")
        k_noise, k_model = jax.random.split(key)
        value, grad, norms = clipped(params, x, y, key=k_model if model.needs_key else None)
        n = norms.shape[0]
        leaves, treedef = jax.tree.flatten(grad)
        keys = jax.random.split(k_noise, max(len(leaves), 1))
        noisy = [g + (std / n) * jax.random.normal(k, g.shape, g.dtype)
                 for g, k in zip(leaves, keys)]
        return value, jax.tree.unflatten(treedef, noisy), norms

    return f


def as_config(dp, where: str = "fit") -> DPConfig:
    """``dp`` (a :class:`DPConfig` or a dict of its fields) as a checked ``DPConfig``."""
    if isinstance(dp, dict):
        unknown = set(dp) - set(DPConfig._fields)
        if unknown:
            raise TypeError(f"{where}: dp takes {list(DPConfig._fields)}, got unknown "
                            f"{sorted(unknown)}")
        dp = DPConfig(**dp)
    if not isinstance(dp, DPConfig):
        raise TypeError(f"{where}: dp must be fn.dp.DPConfig(l2_norm_clip, noise_multiplier) (or a "
                        f"dict of those), got {type(dp).__name__}")
    _check_settings(f"{where}(dp=...)", dp.l2_norm_clip, dp.noise_multiplier)
    return DPConfig(float(dp.l2_norm_clip), float(dp.noise_multiplier))


def fit_step(model: Layer, loss: Loss, optimizer, dp: DPConfig):
    """The DP-SGD step in ``fit``'s form: ``step(params, opt_state, state, x, y, key) ->
    (params, opt_state, state, value)`` (``state`` is ``()``: DP models are stateless).

    ``fn.fit(..., dp=DPConfig(C, sigma))`` runs this step where it would run the
    ordinary one, with a key for every step; it is exactly :func:`train_step`'s
    update (same gradient, same noise for the same key)."""
    grad_fn = private_grad(model, loss, l2_norm_clip=dp.l2_norm_clip,
                           noise_multiplier=dp.noise_multiplier)

    def step(params, opt_state, state, x, y, key):
        value, grad, _ = grad_fn(params, x, y, key=key)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return apply_updates(params, updates), opt_state, state, value

    return step


def train_step(model: Layer, loss: Loss, optimizer, *, l2_norm_clip: float = 1.0,
               noise_multiplier: float = 1.1):
    """One jit-compiled DP-SGD step: ``step(params, opt_state, x, y, *, key)
    -> (params, opt_state, value)``.

    The gradient is :func:`private_grad`'s (clipped per example to
    ``l2_norm_clip``, Gaussian noise ``noise_multiplier * l2_norm_clip``, divided
    by the batch size); ``optimizer`` is any ``(init, update)`` optimizer.
    ``value`` is the batch loss before the update. Pass a fresh ``key`` every
    step. No privacy accounting (see the module docstring).
    """
    inner = fit_step(model, loss, optimizer, DPConfig(l2_norm_clip, noise_multiplier))

    @jax.jit
    def step(params, opt_state, x, y, *, key):
        params, opt_state, _, value = inner(params, opt_state, (), x, y, key)
        return params, opt_state, value

    return step
