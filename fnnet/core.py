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

Everything else fnnet knows about a layer (its name, whether it needs a key, its
state rule, its children and how data flows through them, its per-example and
learning rules) is ONE frozen :class:`Meta` record, given as :func:`named`'s
keywords and read through :func:`meta`. A combinator's record holds a
:class:`Graph` (:func:`combinator`): :mod:`fnnet.walk` follows it for every tool.

This module also holds the functions that work on any layer: :func:`apply`,
:func:`vjp` (mirrors ``jax.vjp``) and :func:`custom_vjp` (hands a layer's manual
backward to ``jax.grad``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax

from .shapes import check_shape_tree
from .static import Static

__all__ = ["Layer", "Loss", "Static", "Meta", "Graph", "meta", "named", "combinator",
           "no_params", "layer_keys", "forward", "apply", "vjp", "custom_vjp"]


@dataclasses.dataclass(frozen=True)
class Graph:
    """How a combinator routes through its children: read by :mod:`fnnet.walk`, so that
    every tool sees through every combinator the same way.

    ``forward(params, x, key, state, run) -> (y, residuals)`` and
    ``backward(residuals, dy, back) -> (dparams, dx)`` are the combinator's own
    forward and backward, written once over its children: ``run(i, params_i, x_i,
    key_i, state_i) -> (y_i, residuals_i)`` runs child ``i`` and ``back(i,
    residuals_i, dy_i) -> (dparams_i, dx_i)`` runs its backward. The layer's
    ``fwd``/``bwd`` pass the children's own; a walker passes recording ones.

    The rest describes the pieces without running anything: ``params(params)`` and
    ``residuals(res)`` give each child's (tuples, one entry per child);
    ``wrapper``: one child that takes the key and the state whole (``residual``,
    ``tie``, ``mixed_precision``), else keys are split per child (as ``serial``
    splits) and the state is a tuple per child; ``output``: the child whose output
    is this layer's output (``serial``: the last; None when it is combined);
    ``additive``: the children's params are disjoint parts of this layer's, so
    their squared gradient norms add (not for ``mixed_precision``, which rescales,
    nor ``tie``, which shares); ``shares``: a tie's ``(source, targets)`` paths;
    ``reads(x) -> [(i, x_i)]``: the children that read this layer's input ``x`` itself
    (default: the first, all of it; ``parallel``: each its entry).
    """

    kind: str
    children: tuple
    forward: Callable
    backward: Callable
    params: Callable = tuple
    residuals: Callable = tuple
    wrapper: bool = False
    output: int | None = None
    additive: bool = True
    shares: tuple | None = None
    reads: Callable = lambda x: [(0, x)]


@dataclasses.dataclass(frozen=True)
class Meta:
    """Everything fnnet knows about a layer besides ``init``/``fwd``/``bwd``: one frozen
    record, built by :func:`named`'s keywords and read through :func:`meta`.

    ``name``: readable name for messages. ``needs_key``: random in training
    (Dropout, BatchNorm). ``input_dtype``: what ``init``'s shape inference feeds a
    first layer (None: float32). ``state``: a stateful layer's
    :class:`~fnnet.state.StateRule`. ``graph``: a combinator's :class:`Graph`.
    ``per_example(res, dy)`` / ``sqnorm(res, dy)``: per-example gradients (leading
    batch axis) and their squared norms ``(n,)`` (:mod:`fnnet.per_example`);
    ``scaled_grad(res, dy, factor)``: ``sum_i factor[i] g_i`` when the layer can
    scale after a costly part of its backward (DP-SGD's clipped sum).
    ``batch_coupled``: examples interact (no per-example gradients). ``rule``: the
    learning rule whose ``bwd`` is not the true VJP on purpose, ``true_bwd`` the
    true one (:mod:`fnnet.rules`). ``check_input(x)``: a check of concrete input
    data, run before compiling (``Embedding``'s id range). ``config``: a model's
    architecture record (:class:`fnnet.models.ModelConfig`).
    """

    name: str
    needs_key: bool = False
    input_dtype: Any = None
    state: Any = None
    graph: Graph | None = None
    per_example: Callable | None = None
    sqnorm: Callable | None = None
    scaled_grad: Callable | None = None
    batch_coupled: bool = False
    rule: str = ""
    true_bwd: Callable | None = None
    check_input: Callable | None = None
    config: Any = None


# A layer written before the record existed pins these attributes on its ``fwd``
# (``fwd.fnnet_per_example = ...``); :func:`meta` still reads them.
_LEGACY = {"fnnet_name": "name", "fnnet_needs_key": "needs_key",
           "fnnet_input_dtype": "input_dtype", "fnnet_state": "state",
           "fnnet_per_example": "per_example", "fnnet_sqnorm": "sqnorm",
           "fnnet_scaled_grad": "scaled_grad", "fnnet_batch_coupled": "batch_coupled",
           "fnnet_rule": "rule", "fnnet_true_bwd": "true_bwd",
           "fnnet_check_input": "check_input", "fnnet_config": "config"}


def meta(layer) -> Meta:
    """The layer's :class:`Meta` record: the one that :func:`named` attached, or, for a
    hand-made ``Layer(init, fwd, bwd)``, defaults named after ``fwd``. Attributes in
    the old style (``fwd.fnnet_rule = ...``) override the record's fields."""
    fwd = layer.fwd
    record = getattr(fwd, "fnnet_meta", None)
    if record is None:
        record = Meta(getattr(fwd, "__name__", None) or type(fwd).__name__)
    legacy = {field: value for attr, field in _LEGACY.items()
              if (value := getattr(fwd, attr, None)) is not None}
    return dataclasses.replace(record, **legacy) if legacy else record


class Layer(NamedTuple):
    """A layer: ``init(key, input_shape) -> params``, ``fwd(params, x, *, key=None)
    -> (y, residuals)``, ``bwd(residuals, dy) -> (dparams, dx)``.

    ``layer.name`` is a readable name used in error messages (``"Dense(3)"``);
    ``layer.needs_key`` says whether training needs a PRNG key (e.g. Dropout).
    Both come from the layer's :class:`Meta` record (:func:`meta`), so any
    hand-made ``Layer(init, fwd, bwd)`` works too (its name is ``fwd``'s name).
    """

    init: Callable[..., Any]
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]

    recipe_field = "fwd"     # the constructor call that built it is recorded on fwd

    @property
    def name(self) -> str:
        return meta(self).name

    @property
    def needs_key(self) -> bool:
        return bool(meta(self).needs_key)

    @property
    def has_state(self) -> bool:
        """Whether the layer carries state (BatchNorm's running statistics), itself or in
        a child; see :mod:`fnnet.state`."""
        m = meta(self)
        return m.state is not None or (m.graph is not None and
                                       any(c.has_state for c in m.graph.children))

    @property
    def input_dtype(self):
        """The dtype ``init``'s shape inference feeds this layer: ``float32`` unless the
        layer declared another (``Embedding`` takes ``int32`` ids)."""
        return meta(self).input_dtype or jax.numpy.float32

    def __repr__(self) -> str:
        return f"<fnnet Layer {self.name}>"


class Loss(NamedTuple):
    """A loss: ``fwd(pred, target) -> (scalar, residuals)``, ``bwd(residuals, g) -> dpred``."""

    fwd: Callable[..., Any]
    bwd: Callable[..., Any]

    recipe_field = "fwd"

    @property
    def name(self) -> str:
        return getattr(self.fwd, "fnnet_name", getattr(self.fwd, "__name__", "Loss"))

    def __repr__(self) -> str:
        return f"<fnnet Loss {self.name}>"


def no_params(key, input_shape):
    """The ``init`` of a parameter-free layer: params ``()``."""
    del key, input_shape
    return ()


def named(name: str, init, fwd, bwd, *, needs_key: bool = False, input_dtype=None,
          **fields) -> Layer:
    """Build a :class:`Layer` whose :class:`Meta` record says ``name`` (for error
    messages) and ``fields``.

    ``needs_key=True`` marks a layer that is random in training (Dropout):
    ``value_and_grad``, ``train_step`` and ``fit`` then require a ``key``.
    ``input_dtype`` declares what a first layer takes when the model's ``init``
    infers shapes (default float32; ``Embedding`` says ``jnp.int32``). The other
    keywords are :class:`Meta`'s fields: ``state=StateRule(init, update)``,
    ``per_example=``, ``sqnorm=``, ``batch_coupled=``, ``rule=`` with
    ``true_bwd=``, and ``graph=`` (see :func:`combinator`).
    """
    fwd.fnnet_meta = Meta(name, needs_key=needs_key, input_dtype=input_dtype, **fields)

    def checked_init(key, input_shape):  # init(key, 2) instead of (2,): say so, for every layer
        check_shape_tree(name, input_shape)
        return init(key, input_shape)

    return Layer(checked_init, fwd, bwd)


def layer_keys(key, n: int) -> list:
    """One key per child, split exactly as ``serial`` splits (``None``s for inference)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def call(layer: Layer, params, x, key=None, state=None):
    """``layer.fwd(params, x, key=key)``, with ``state=`` for a stateful layer only
    (stateless layers have no such argument)."""
    if layer.has_state:
        return layer.fwd(params, x, key=key, state=state)
    return layer.fwd(params, x, key=key)


def combinator(name: str, init, graph: Graph, **fields) -> Layer:
    """A :class:`Layer` made of ``graph.children``: its ``fwd`` and ``bwd`` are the
    graph's ``forward``/``backward`` over the children's own, so a walker that runs
    the same graph with recording children computes exactly what ``fwd`` does.
    ``needs_key`` is any child's unless given."""
    kids = graph.children

    def fwd(params, x, *, key=None, state=None):
        return graph.forward(params, x, key, state,
                             lambda i, p, xi, k, s: call(kids[i], p, xi, k, s))

    def bwd(res, dy):
        return graph.backward(res, dy, lambda i, r, d: kids[i].bwd(r, d))

    fields.setdefault("needs_key", any(c.needs_key for c in kids))
    return named(name, init, fwd, bwd, graph=graph, **fields)


def forward(layer: Layer, params, x, *, key=None, state=None):
    """``layer.fwd(params, x, key=key)``, passing ``state=`` to a stateful layer.

    Stateless layers never receive ``state`` (their ``fwd`` has no such
    argument). A stateful layer in inference (``key=None``) needs its state.
    """
    if key is None and state is None and layer.has_state:
        raise ValueError(
            f"{layer.name}: inference (key=None) uses the layer state (e.g. BatchNorm's running "
            f"statistics), but no state was given; pass state=fn.init_state(model, params) (or "
            f"the state returned by training), or a key for training mode.")
    return call(layer, params, x, key, state)


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
