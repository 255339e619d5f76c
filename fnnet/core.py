"""The two contracts of fnnet: ``Layer`` and ``Loss``.

A **Layer** is a ``NamedTuple(init, fwd, bwd)`` of pure functions::

    init(key, input_shape)        -> params        # input_shape: ONE example, no batch axis
    fwd(params, x, *, key=None)   -> (y, residuals)
    bwd(residuals, dy)            -> (dparams, dx)  # the hand-written VJP

``residuals`` is whatever ``bwd`` needs and nothing more: a pytree whose leaves
are arrays (static metadata such as an input shape goes in a :class:`Static`
node, which has no leaves). ``dparams`` has exactly the tree structure of
``params``. ``key=None`` means inference (no dropout).

A **Loss** is a ``NamedTuple(fwd, bwd)``::

    fwd(pred, target) -> (scalar, residuals)
    bwd(residuals, g) -> dpred                     # g: cotangent of the scalar

This module also holds the functions that work on any layer: :func:`apply`,
:func:`vjp` (mirrors ``jax.vjp``) and :func:`custom_vjp` (hands a layer's manual
backward to ``jax.grad``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from .shapes import check_shape_tree

__all__ = ["Layer", "Loss", "Static", "named", "no_params", "forward", "apply", "vjp", "custom_vjp"]


class Layer(NamedTuple):
    """A layer: ``init(key, input_shape) -> params``, ``fwd(params, x, *, key=None)
    -> (y, residuals)``, ``bwd(residuals, dy) -> (dparams, dx)``.

    ``layer.name`` is a readable name used in error messages (``"Dense(3)"``);
    ``layer.needs_key`` says whether training needs a PRNG key (e.g. Dropout).
    Both are read from attributes that :func:`named` attaches to ``fwd``, so any
    hand-made ``Layer(init, fwd, bwd)`` works too (its name is ``fwd``'s name).
    """

    init: Callable[..., Any]
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]

    @property
    def name(self) -> str:
        return getattr(self.fwd, "fnnet_name", getattr(self.fwd, "__name__", "Layer"))

    @property
    def needs_key(self) -> bool:
        return bool(getattr(self.fwd, "fnnet_needs_key", False))

    @property
    def has_state(self) -> bool:
        """Whether the layer carries state (BatchNorm's running statistics); see :mod:`fnnet.state`."""
        return getattr(self.fwd, "fnnet_state", None) is not None

    @property
    def input_dtype(self):
        """The dtype ``init``'s shape inference feeds this layer: ``float32`` unless the
        layer declared another (``Embedding`` takes ``int32`` ids)."""
        return getattr(self.fwd, "fnnet_input_dtype", None) or jax.numpy.float32

    def __repr__(self) -> str:
        return f"<fnnet Layer {self.name}>"

    def summary(self, input_shape):
        """The table of :func:`fnnet.summary`: ``net.summary((784,))``."""
        from .summary import summary

        return summary(self, input_shape)


class Loss(NamedTuple):
    """A loss: ``fwd(pred, target) -> (scalar, residuals)``, ``bwd(residuals, g) -> dpred``."""

    fwd: Callable[..., Any]
    bwd: Callable[..., Any]

    @property
    def name(self) -> str:
        return getattr(self.fwd, "fnnet_name", getattr(self.fwd, "__name__", "Loss"))

    def __repr__(self) -> str:
        return f"<fnnet Loss {self.name}>"


def no_params(key, input_shape):
    """The ``init`` of a parameter-free layer: params ``()``."""
    del key, input_shape
    return ()


def named(name: str, init, fwd, bwd, *, needs_key: bool = False, input_dtype=None) -> Layer:
    """Build a :class:`Layer` whose ``name`` (for error messages) is ``name``.

    ``needs_key=True`` marks a layer that is random in training (Dropout):
    ``value_and_grad``, ``train_step`` and ``fit`` then require a ``key``.
    ``input_dtype`` declares what a first layer takes when the model's ``init``
    infers shapes (default float32; ``Embedding`` says ``jnp.int32``).
    """
    fwd.fnnet_name = name
    fwd.fnnet_needs_key = needs_key
    fwd.fnnet_input_dtype = input_dtype

    def checked_init(key, input_shape):  # init(key, 2) instead of (2,): say so, for every layer
        check_shape_tree(name, input_shape)
        return init(key, input_shape)

    return Layer(checked_init, fwd, bwd)


@jax.tree_util.register_static
class Static:
    """A residual node holding static (hashable, non-array) data, e.g. a shape.

    It has no array leaves, so residual trees stay valid ``jax.custom_vjp``
    residuals and pass through ``jit`` unchanged::

        return y, Static(x.shape)        # in fwd
        shape = res.value                # in bwd
    """

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return hash(self.value)

    def __eq__(self, other):
        return isinstance(other, Static) and self.value == other.value

    def __repr__(self):
        return f"Static({self.value!r})"


def forward(layer: Layer, params, x, *, key=None, state=None):
    """``layer.fwd(params, x, key=key)``, passing ``state=`` to a stateful layer.

    Stateless layers never receive ``state`` (their ``fwd`` has no such
    argument). A stateful layer in inference (``key=None``) needs its state.
    """
    if not layer.has_state:
        return layer.fwd(params, x, key=key)
    if key is None and state is None:
        raise ValueError(
            f"{layer.name}: inference (key=None) uses the layer state (e.g. BatchNorm's running "
            f"statistics), but no state was given; pass state=fn.init_state(model, params) (or "
            f"the state returned by training), or a key for training mode.")
    return layer.fwd(params, x, key=key, state=state)


def apply(layer: Layer, params, x, *, key=None, state=None):
    """The layer's output ``y`` alone: ``layer.fwd(params, x, key=key)[0]``.

    A stateful model (``layer.has_state``) takes ``state=`` in inference.
    """
    return forward(layer, params, x, key=key, state=state)[0]


def vjp(layer: Layer, params, x, *, key=None):
    """Mirror of ``jax.vjp`` using the hand-written backward.

    Returns ``(y, pullback)`` with ``pullback(dy) -> (dparams, dx)``, where ``dy``
    has the shape and dtype of ``y``. No autodiff runs.
    """
    y, res = layer.fwd(params, x, key=key)
    return y, lambda dy: layer.bwd(res, dy)


def custom_vjp(layer: Layer):
    """Wrap a layer as ``f(params, x, key=None) -> y`` registered with ``jax.custom_vjp``.

    Inside any larger JAX program, ``jax.grad``/``jax.vjp`` of ``f`` then use the
    layer's hand-written ``bwd`` instead of differentiating ``fwd``. Reverse mode
    only: ``jax.jvp``/``jax.jacfwd`` through ``f`` raise, as for every
    ``jax.custom_vjp`` function. The key (if any) gets no cotangent.

    Example::

        f = fn.custom_vjp(net)
        g = jax.grad(lambda p: jnp.sum(f(p, x) ** 2))(params)   # uses net.bwd
    """

    @jax.custom_vjp
    def f_nokey(params, x):
        return layer.fwd(params, x)[0]

    def fwd_nokey(params, x):
        return layer.fwd(params, x)

    def bwd_nokey(res, dy):
        return layer.bwd(res, dy)

    f_nokey.defvjp(fwd_nokey, bwd_nokey)

    @jax.custom_vjp
    def f_key(params, x, key):
        return layer.fwd(params, x, key=key)[0]

    def fwd_key(params, x, key):
        return layer.fwd(params, x, key=key)

    def bwd_key(res, dy):
        dparams, dx = layer.bwd(res, dy)
        return dparams, dx, None

    f_key.defvjp(fwd_key, bwd_key)

    def f(params, x, key=None):
        if key is None:
            return f_nokey(params, x)
        return f_key(params, x, key)

    f.__doc__ = f"{layer.name} with its hand-written VJP registered via jax.custom_vjp."
    return f
