"""Per-example gradients and their norms, from the hand-written backward.

``per_example_grads(model, loss, params, x, y)`` returns, for every example
``i``, the gradient of **its own loss**: the loss of a batch holding example
``i`` alone, ``loss.fwd(out[i:i+1], y[i:i+1])``. For a mean-over-the-batch loss
that is ``n`` times example ``i``'s share of the batch gradient, so the batch
gradient is the mean of the per-example gradients. Every leaf has a leading
batch axis (``(n, *leaf.shape)``) and equals ``jax.vmap(jax.grad(...))`` over
single examples.

``per_example_grad_norms(...)`` returns ``(n,)``: each example's gradient norm
(all params together), WITHOUT materialising the per-example gradients where a
layer knows a cheaper way. The walk is one forward and one backward of the
batch, in which each parametrised layer turns the residuals and the output
cotangent it already has into per-example quantities:

* **Dense** on ``(n, in)``: ``g_i = x_i dy_i^T``, so
  ``||g_i||^2 = ||x_i||^2 ||dy_i||^2`` (+ ``||dy_i||^2`` for the bias).
* **Dense on sequences, Conv2D** (``x_i`` is ``(T, p)``: time steps or image
  patches, ``dy_i`` is ``(T, q)``): ``g_i = sum_t x_t dy_t^T`` and the "ghost
  norm" (Goodfellow 2015; Li et al. 2022)::

      ||g_i||_F^2 = sum_{t,s} (x_t . x_s)(dy_t . dy_s)        cost T^2 (p + q)

  used when it is cheaper than materialising ``g_i`` (cost ``T p q``), i.e.
  when ``2 T^2 < p q`` (:func:`ghost_sqnorm` picks).
* The same for Conv1D (patches), Unembed, and MultiHeadAttention's two
  projections (``x`` with ``dqkv``, the attention output with ``dy``).
* **Embedding**: ``||g_i||^2 = sum_{t,s} [id_t == id_s] (dy_t . dy_s)``.
* LayerNorm, RMSNorm, PositionalEmbedding: the per-example gradients are as
  small as the activations, and are formed.

How a layer takes part (the rules sit beside its ``bwd``, in the layer's file)::

    named(name, init, fwd, bwd, per_example=rule, sqnorm=norm)
    rule(res, dy) -> dparams with a leading batch axis
    norm(res, dy) -> (n,) squared norm of those (optional)

The walk is :mod:`fnnet.walk`'s tape, so it sees through every combinator: each
graph combines its children's per-example gradients in its own backward (a tied
parameter's per-example gradient is the sum of its uses'). For the norms, the
children's squared norms add where their params are disjoint parts of the
graph's (``serial``, ``parallel``, ``residual``); a ``tie``'s norm adds the cross
terms of the uses, from their per-example gradients (formed for the tied leaves
only); any other graph (``mixed_precision``, which rescales) forms its
per-example gradients. Layers without params (``FanOut``, ``FanInSum``, ...)
only pass ``dx`` on. A parametrised layer without a rule falls back to
the exact but costly route: ``vmap`` of its forward and backward over single
examples of its input (as Opacus falls back to ``functorch``); this is refused
for random layers in training (their masks would differ). Layers whose examples
interact have no per-example gradients and raise, naming the layer: those with
layer state (BatchNorm's batch statistics) and any marked
``named(..., batch_coupled=True)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .core import Layer, Loss, meta
from .grad import require_key
from .sqnorm import examplewise_sqnorm, ghost_sqnorm, wide
from .walk import Node, backward, locate, nodes, record

__all__ = ["per_example_grads", "per_example_grad_norms", "per_example_losses",
           "ghost_sqnorm", "examplewise_sqnorm"]


# --- the own loss of each example -----------------------------------------------

def per_example_losses(loss: Loss, out, y):
    """``(values (n,), dout)``: each example's own loss and its cotangent for ``out``.

    The loss of a batch holding example ``i`` alone and its hand-written
    backward (``loss.bwd`` seeded with 1), vmapped over the examples.
    """

    def one(o, t):
        v, r = loss.fwd(o[None], jax.tree.map(lambda a: a[None], t))
        return v, loss.bwd(r, jnp.ones((), v.dtype))[0]

    return jax.vmap(one)(out, y)


# --- the walk ------------------------------------------------------------------------

def _has_param_leaves(params) -> bool:
    return any(jnp.issubdtype(jnp.result_type(a), jnp.floating) for a in jax.tree.leaves(params))


def _unsupported(layer: Layer, why: str, where: str):
    return ValueError(
        f"{where}: {layer.name} {why}, so per-example gradients are not defined for it. "
        f"Use a layer whose examples do not interact (e.g. LayerNorm instead of BatchNorm), "
        f"or give the layer a rule named(..., per_example=rule), rule(res, dy), beside its bwd.")


def _fallback(node: Node, dy, where: str):
    """vmap of the layer's own forward+backward over single examples of its input."""
    layer = node.layer
    if node.key is not None and layer.needs_key:
        raise _unsupported(layer, "is random in training and has no per-example rule "
                           "(its masks would differ example by example)", where)

    def one(xi, dyi):    # trees: a tuple input, a None cotangent
        _, res = layer.fwd(node.params, jax.tree.map(lambda a: a[None], xi))
        return layer.bwd(res, jax.tree.map(lambda a: a[None], dyi))[0]

    return jax.vmap(one)(node.x, dy)


def _batched(grads, params, n):
    """Per-example gradients: leaves a graph computes itself, the same for every example
    (a mixed-precision loss scale's 0), get the batch axis too."""
    return jax.tree.map(lambda g, p: g if jnp.ndim(g) > jnp.ndim(p)
                        else jnp.broadcast_to(g, (n, *jnp.shape(g))), grads, params)


def _opaque(node: Node) -> bool:
    """Whether a graph below ``node`` (itself excluded) does not simply add its children's
    norms (a nested tie, mixed precision)."""
    return any(n is not node and not n.leaf and (n.graph.shares or not n.graph.additive)
               for n in nodes(node))


def _leaf(node: Node, dy, mode: str, where: str, keep):
    """A leaf layer's per-example result (a params-shaped tree with a batch axis, or its
    squared norm ``(n,)``, None without params) and its ``dx``."""
    layer, m = node.layer, meta(node.layer)
    if layer.has_state or m.batch_coupled:
        raise _unsupported(layer, "couples the examples of a batch (batch statistics)", where)
    _, dx = layer.bwd(node.res, dy)
    if not _has_param_leaves(node.params):
        n = jax.tree.leaves(dy)[0].shape[0]
        if mode == "grads":
            return jax.tree.map(lambda a: jnp.zeros((n, *jnp.shape(a)), jnp.result_type(a)),
                                node.params), dx
        return None, dx
    kept = keep is not None and id(node) in keep
    if mode == "sqnorm" and m.sqnorm is not None and not kept:
        return wide(m.sqnorm(node.res, dy)), dx
    g = m.per_example(node.res, dy) if m.per_example is not None else _fallback(node, dy, where)
    if kept:
        keep[id(node)] = g
    return (g if mode == "grads" else examplewise_sqnorm(g)), dx


def _backward(node: Node, dy, mode: str, where: str, keep=None):
    """``(per-example result, dx)`` over the tape below ``node``; ``mode`` is ``"grads"``
    (a params-shaped tree with a batch axis) or ``"sqnorm"`` (``(n,)``, or None when
    nothing has params). ``keep``: ``{id(leaf node): None}`` for leaves whose
    per-example gradients a ``tie`` needs; they are formed and stored there."""

    def hook(node, dy, inside):
        node.dy, graph = dy, node.graph
        if graph is None:
            return _leaf(node, dy, mode, where, keep)
        if mode == "grads":          # the graph's own backward, on per-example gradients
            dp, dx = inside(dy)
            return _batched(dp, node.params, jax.tree.leaves(dy)[0].shape[0]), dx
        if graph.shares is not None and not _opaque(node):
            return _tie_norms(node, dy, where, keep)
        if graph.shares is not None or not graph.additive:
            dp, dx = _backward(node, dy, "grads", where)    # e.g. mixed precision rescales:
            return examplewise_sqnorm(dp), dx               # form the per-example gradients
        sq, dx = inside(dy)          # the children's squared norms in place of their dparams
        norms = jax.tree.leaves(sq)
        return (sum(norms) if norms else None), dx

    return backward(node, dy, hook)


def _tie_norms(node: Node, dy, where, keep):
    """A tied parameter's per-example gradient is the sum of its uses' (for every
    example); its squared norm is the uses' norms (from the inner walk) plus the cross
    terms ``||sum_u g_u||^2 - sum_u ||g_u||^2``, from the per-example gradients of the
    tied leaves only (formed during the same walk)."""
    source, targets = node.graph.shares
    child = node.children[0]
    keypath = lambda path: tuple(jax.tree_util.SequenceKey(k) if isinstance(k, int) else
                                 jax.tree_util.DictKey(k) for k in path)
    places = {p: locate(child, keypath(p)) for p in (source, *targets)}
    keep = {} if keep is None else keep
    keep.update({id(leaf): None for leaf, _ in places.values()})
    sq, dx = _backward(child, dy, "sqnorm", where, keep)

    def grad_at(p):
        leaf, rest = places[p]
        return dict(jax.tree_util.tree_flatten_with_path(keep[id(leaf)])[0])[rest]

    uses = [grad_at(p) for p in (source, *targets)]
    total = examplewise_sqnorm(sum(uses[1:], uses[0]))
    return sq + total - sum(examplewise_sqnorm(u) for u in uses), dx


def _first(x):
    """The first array of ``x`` (a tuple input, e.g. ``(ids, padding mask)``, is batched
    along axis 0 of each entry)."""
    return jax.tree.leaves(x)[0] if isinstance(x, (tuple, list)) else x


def _check_batch(x, where):
    x = _first(x)
    if jnp.ndim(x) < 1 or jnp.shape(x)[0] == 0:
        raise ValueError(f"{where}: x must have a non-empty batch axis, got shape {jnp.shape(x)}")


def walk(model: Layer, loss: Loss, params, x, y, *, key=None, mode: str,
         where: str = "per_example"):
    """``(values (n,), result, root, dout)``: the shared forward+backward of this module.

    ``root`` (the tape, with every layer's cotangent recorded) and ``dout`` let a
    caller reuse the walk: :mod:`fnnet.dp` forms the clipped sum with :func:`scaled_sum`.
    """
    _check_batch(x, where)
    require_key(model, key, where)
    out, root = record(model, params, x, key=key)
    values, dout = per_example_losses(loss, out, y)
    result, _ = _backward(root, dout, mode, where)
    return values, result, root, dout


def scaled_sum(root: Node, factor):
    """``sum_i factor[i] g_i`` (params' tree) after a walk, without another backward chain.

    Every layer's backward is linear in its output cotangent and the examples do not
    interact, so scaling example ``i``'s loss cotangent by ``factor[i]`` scales each
    layer's ``dy_i`` by the same factor: each leaf's ``bwd`` is called once more on
    its recorded ``dy`` scaled per example, and the graphs combine the results as in
    their own backward; every ``dx`` (unused) is dead code under ``jit``
    ("book-keeping", Bu et al. 2022). DP-SGD's clipped sum. A layer may give
    ``named(..., scaled_grad=rule)``, ``rule(res, dy, factor)``, instead, to scale after
    a costly part of its backward that the walk already computed (MultiHeadAttention's
    ``dqkv``)."""

    def hook(node, dy, inside):
        if not node.leaf:
            return inside(dy)
        rule = meta(node.layer).scaled_grad
        if rule is not None and _has_param_leaves(node.params):
            return rule(node.res, node.dy, factor), node.layer.bwd(node.res, node.dy)[1]
        scaled = jax.tree.map(
            lambda d: d * factor.reshape((-1,) + (1,) * (d.ndim - 1)).astype(d.dtype), node.dy)
        dp, dx = node.layer.bwd(node.res, scaled)
        return (dp if _has_param_leaves(node.params) else
                jax.tree.map(jnp.zeros_like, node.params)), dx

    return backward(root, root.dy, hook)[0]


def per_example_grads(model: Layer, loss: Loss, params, x, y, *, key=None):
    """Each example's gradient of its OWN loss: params' tree, every leaf ``(n, *shape)``.

    Example ``i``'s own loss is ``loss`` on a batch holding example ``i`` alone
    (for a mean loss: ``n`` times its share of the batch loss, so
    ``mean_i grads_i`` is the batch gradient). Equal to
    ``jax.vmap(jax.grad(lambda p, xi, yi: loss(model(p, xi[None]), yi[None])))``.
    ``key``: random layers (Dropout) use the masks of the batch forward.
    Raises for layers whose examples interact (BatchNorm).
    """
    return walk(model, loss, params, x, y, key=key, mode="grads",
                where="per_example_grads")[1]


def per_example_grad_norms(model: Layer, loss: Loss, params, x, y, *, key=None):
    """``(n,)`` (float32, or float64 for float64 params): the L2 norm (over all params) of each example's own gradient.

    Same gradients as :func:`per_example_grads`, but each layer with a norm rule
    (Dense, Conv2D, LayerNorm, ...) computes ``||g_i||^2`` from its residuals and
    output cotangent without forming ``g_i`` (ghost norms for sequences and
    convolutions). One forward and one backward of the batch.
    """
    sq = walk(model, loss, params, x, y, key=key, mode="sqnorm",
              where="per_example_grad_norms")[1]
    if sq is None:
        return jnp.zeros((jnp.shape(_first(x))[0],), jnp.float32)
    return jnp.sqrt(sq)
