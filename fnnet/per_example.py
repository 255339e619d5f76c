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

How a layer takes part (the rule sits beside its ``bwd``, in the layer's file)::

    fwd.fnnet_per_example(res, dy) -> dparams with a leading batch axis
    fwd.fnnet_sqnorm(res, dy)      -> (n,) squared norm of those (optional)

``serial`` and ``parallel`` models are walked child by child (``fwd.fnnet_layers``);
a wrapper exposing ``fwd.fnnet_inner`` whose params are the inner layer's
(``residual``) is walked into, and so is a ``tie`` (``fwd.fnnet_fill``): a tied
parameter's per-example gradient is the sum of its uses'; its norm adds the cross
terms of the uses, from their per-example gradients (formed for the tied leaves
only). Other combinators (``FanOut``, ``FanInSum``, ``FanInConcat``) and
every layer without params only pass ``dx`` on. A parametrised layer without a rule falls back to
the exact but costly route: ``vmap`` of its forward and backward over single
examples of its input (as Opacus falls back to ``functorch``); this is refused
for random layers in training (their masks would differ). Layers whose examples
interact have no per-example gradients and raise, naming the layer: those with
layer state (BatchNorm's batch statistics) and any marked
``fwd.fnnet_batch_coupled = True``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .core import Layer, Loss, layer_keys, meta
from .grad import require_key

__all__ = ["per_example_grads", "per_example_grad_norms", "per_example_losses",
           "ghost_sqnorm", "examplewise_sqnorm"]


# --- helpers the layer files use ------------------------------------------------

def ghost_sqnorm(a, b):
    """``||a_i^T b_i||_F^2`` for ``a (n, T, p)``, ``b (n, T, q)``: ``(n,)``.

    Ghost norm ``sum_{t,s} (a_t . a_s)(b_t . b_s)`` when ``2 T^2 < p q``,
    else the materialised ``(n, p, q)`` product (Li et al. 2022 pick the same
    way). ``T = 1`` is ``||a_i||^2 ||b_i||^2``.
    """
    a, b = _wide(a), _wide(b)
    n, t, p = a.shape
    q = b.shape[-1]
    if t == 1:
        return jnp.sum(a * a, axis=(1, 2)) * jnp.sum(b * b, axis=(1, 2))
    if 2 * t * t < p * q:
        aa = jnp.einsum("ntp,nsp->nts", a, a)
        bb = jnp.einsum("ntq,nsq->nts", b, b)
        return jnp.sum(aa * bb, axis=(1, 2))
    g = jnp.einsum("ntp,ntq->npq", a, b)
    return jnp.sum(g * g, axis=(1, 2))


def _wide(a):
    """``a`` in at least float32 (16-bit squares would lose the sum)."""
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def examplewise_sqnorm(tree):
    """``sum over leaves of ||leaf[i]||^2``: ``(n,)`` from per-example gradients."""
    leaves = [a for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)]
    if not leaves:
        return None
    return sum(jnp.sum(jnp.square(_wide(a)).reshape(a.shape[0], -1), axis=1) for a in leaves)


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

@dataclasses.dataclass
class _Node:
    layer: Layer
    params: object
    x: object
    kind: str                 # "serial", "parallel", "inner" (residual), "tie" or "leaf"
    res: object = None
    key: object = None
    children: tuple = ()
    dy: object = None         # a leaf's output cotangent, recorded by the backward walk


def _has_param_leaves(params) -> bool:
    return any(jnp.issubdtype(jnp.result_type(a), jnp.floating) for a in jax.tree.leaves(params))


def _kind(layer: Layer) -> str:
    graph = meta(layer).graph
    kind = graph and {"residual": "inner"}.get(graph.kind, graph.kind)
    return kind if kind in ("serial", "parallel", "inner", "tie") else "leaf"


def _forward(layer: Layer, params, x, key):
    """Forward as ``layer.fwd`` computes it, keeping what the per-example backward needs."""
    kind = _kind(layer)
    if kind in ("serial", "parallel"):
        layers = meta(layer).graph.children
        keys = layer_keys(key, len(layers))
        nodes, h = [], x
        if kind == "serial":
            for child, p, k in zip(layers, params, keys):
                h, node = _forward(child, p, h, k)
                nodes.append(node)
        else:
            outs = [_forward(child, p, xi, k) for child, p, xi, k in zip(layers, params, x, keys)]
            h, nodes = tuple(o[0] for o in outs), [o[1] for o in outs]
        return h, _Node(layer, params, x, kind, key=key, children=tuple(nodes))
    if kind == "tie":  # the inner model on the filled-in params; the tie itself adds nothing
        graph = meta(layer).graph
        y, child = _forward(graph.children[0], graph.params(params)[0], x, key)
        return y, _Node(layer, params, x, kind, key=key, children=(child,))
    y, res = layer.fwd(params, x, key=key)
    if kind == "inner":
        # e.g. residual(f): params and residuals are f's; f is walked on the same input
        # (the repeated forward is the same computation: XLA merges it under jit)
        _, child = _forward(meta(layer).graph.children[0], params, x, key)
        return y, _Node(layer, params, x, kind, res=res, key=key, children=(child,))
    return y, _Node(layer, params, x, kind, res=res, key=key)


def _unsupported(layer: Layer, why: str, where: str):
    return ValueError(
        f"{where}: {layer.name} {why}, so per-example gradients are not defined for it. "
        f"Use a layer whose examples do not interact (e.g. LayerNorm instead of BatchNorm), "
        f"or give the layer a rule fwd.fnnet_per_example(res, dy) beside its bwd.")


def _fallback(node: _Node, dy, where: str):
    """vmap of the layer's own forward+backward over single examples of its input."""
    layer = node.layer
    if node.key is not None and layer.needs_key:
        raise _unsupported(layer, "is random in training and has no per-example rule "
                           "(its masks would differ example by example)", where)

    def one(xi, dyi):
        _, res = layer.fwd(node.params, xi[None])
        return layer.bwd(res, dyi[None])[0]

    return jax.vmap(one)(node.x, dy)


def _backward(node: _Node, dy, mode: str, where: str, keep=None):
    """``(per-example result, dx)``; ``mode`` is ``"grads"`` (a params-shaped tree with a
    batch axis) or ``"sqnorm"`` (``(n,)``, or None when nothing has params). ``keep``:
    ``{id(leaf node): None}`` for leaves whose per-example gradients a ``tie`` needs;
    in ``"sqnorm"`` mode they are formed and stored there."""
    layer = node.layer
    if node.kind in ("serial", "parallel"):
        outs, dxs = [None] * len(node.children), [None] * len(node.children)
        for i in reversed(range(len(node.children))):
            if node.kind == "serial":
                outs[i], dy = _backward(node.children[i], dy, mode, where, keep)
            else:
                outs[i], dxs[i] = _backward(node.children[i], dy[i], mode, where, keep)
        dx = dy if node.kind == "serial" else tuple(dxs)
        if mode == "grads":
            return tuple(outs), dx
        norms = [o for o in outs if o is not None]
        return (sum(norms) if norms else None), dx
    if node.kind == "inner":
        out, _ = _backward(node.children[0], dy, mode, where, keep)
        return out, layer.bwd(node.res, dy)[1]   # the wrapper's own dx (e.g. + dy)
    if node.kind == "tie":
        return _tie_backward(node, dy, mode, where)
    if layer.has_state or meta(layer).batch_coupled:
        raise _unsupported(layer, "couples the examples of a batch (batch statistics)", where)
    node.dy = dy
    _, dx = layer.bwd(node.res, dy)
    if not _has_param_leaves(node.params):
        n = jax.tree.leaves(dy)[0].shape[0]
        if mode == "grads":
            return jax.tree.map(lambda a: jnp.zeros((n, *jnp.shape(a)), jnp.result_type(a)),
                                node.params), dx
        return None, dx
    sq = meta(layer).sqnorm
    if mode == "sqnorm" and sq is not None and not (keep and id(node) in keep):
        return _wide(sq(node.res, dy)), dx
    rule = meta(layer).per_example
    g = rule(node.res, dy) if rule is not None else _fallback(node, dy, where)
    if keep and id(node) in keep:
        keep[id(node)] = g
    return (g if mode == "grads" else examplewise_sqnorm(g)), dx


def _tie_groups(node: _Node):
    """``{source key path: [target key paths]}`` of a ``tie`` node (``fwd.fnnet_tie``)."""
    def keypath(path):
        return tuple(jax.tree_util.SequenceKey(k) if isinstance(k, int) else
                     jax.tree_util.DictKey(k) for k in path)

    source, targets = meta(node.layer).graph.shares
    return {keypath(source): [keypath(t) for t in targets]}


def _tie_sum(node: _Node, groups, full):
    """The params-shaped gradient of a tie from the inner model's ``full`` one: each
    source leaf plus its targets'; ``None`` at the targets."""
    grads = dict(jax.tree_util.tree_flatten_with_path(full)[0])

    def combine(path, leaf):
        if leaf is None:
            return None
        return sum((grads[t] for t in groups.get(path, ())), grads[path])

    return jax.tree_util.tree_map_with_path(combine, node.params, is_leaf=lambda a: a is None)


def _leaf_at(node: _Node, path):
    """``(leaf node, the rest of path)``: the layer holding the params leaf at ``path``."""
    while node.kind != "leaf":
        if node.kind in ("serial", "parallel"):
            node, path = node.children[path[0].idx], path[1:]
        elif node.kind == "inner":
            node = node.children[0]
        else:
            raise ValueError(f"per_example: nested ties ({node.layer.name}) are not supported")
    return node, path


def _tie_backward(node: _Node, dy, mode, where):
    """A tied parameter's per-example gradient is the sum of its uses' (for every example):
    ``g_source += sum g_target``. Norms: the uses' norms from the inner walk plus the cross
    terms ``||sum_u g_u||^2 - sum_u ||g_u||^2``, from the per-example gradients of the
    tied leaves only (formed during the same walk)."""
    groups = _tie_groups(node)
    child = node.children[0]
    if mode == "grads":
        full, dx = _backward(child, dy, "grads", where)
        return _tie_sum(node, groups, full), dx
    places = {p: _leaf_at(child, p) for src, ts in groups.items() for p in (src, *ts)}
    keep = {id(leaf): None for leaf, _ in places.values()}
    sq, dx = _backward(child, dy, "sqnorm", where, keep)

    def grad_at(p):
        leaf, rest = places[p]
        return dict(jax.tree_util.tree_flatten_with_path(keep[id(leaf)])[0])[tuple(rest)]

    for src, targets in groups.items():
        uses = [grad_at(src), *(grad_at(t) for t in targets)]
        total = examplewise_sqnorm(sum(uses[1:], uses[0]))
        sq = sq + total - sum(examplewise_sqnorm(u) for u in uses)
    return sq, dx


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
    """``(values (n,), result, node, dout)``: the shared forward+backward of this module.

    ``node`` (with every layer's cotangent recorded) and ``dout`` let a caller reuse
    the walk: :mod:`fnnet.dp` forms the clipped sum with :func:`scaled_sum`.
    """
    _check_batch(x, where)
    require_key(model, key, where)
    out, node = _forward(model, params, x, key)
    values, dout = per_example_losses(loss, out, y)
    result, _ = _backward(node, dout, mode, where)
    return values, result, node, dout


def scaled_sum(node: _Node, factor):
    """``sum_i factor[i] g_i`` (params' tree) after a walk, without another backward chain.

    Every layer's backward is linear in its output cotangent and the examples do not
    interact, so scaling example ``i``'s loss cotangent by ``factor[i]`` scales each
    layer's ``dy_i`` by the same factor: each layer's ``bwd`` is called once more on
    its recorded ``dy`` scaled per example, and its ``dx`` (unused) is dead code under
    ``jit`` ("book-keeping", Bu et al. 2022). DP-SGD's clipped sum. A layer may give
    ``fwd.fnnet_scaled_grad(res, dy, factor)`` instead, to scale after a costly part of
    its backward that the walk already computed (MultiHeadAttention's ``dqkv``)."""
    if node.kind in ("serial", "parallel"):
        return tuple(scaled_sum(c, factor) for c in node.children)
    if node.kind == "inner":
        return scaled_sum(node.children[0], factor)
    if node.kind == "tie":
        return _tie_sum(node, _tie_groups(node), scaled_sum(node.children[0], factor))
    if not _has_param_leaves(node.params):
        return jax.tree.map(jnp.zeros_like, node.params)
    rule = getattr(node.layer.fwd, "fnnet_scaled_grad", None)
    if rule is not None:   # the layer scales after its own costly part (attention: dqkv)
        return rule(node.res, node.dy, factor)
    scaled = jax.tree.map(
        lambda d: d * factor.reshape((-1,) + (1,) * (d.ndim - 1)).astype(d.dtype), node.dy)
    return node.layer.bwd(node.res, scaled)[0]


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
