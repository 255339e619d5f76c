"""Check every built-in layer and loss: manual vs autodiff vs float64 finite differences.

The layers are DISCOVERED from fnnet's namespace, so a layer added to
``fnnet/__init__.py`` is checked without touching this file:

* a CamelCase name bound to a :class:`~fnnet.Layer` value (``fn.Relu``) is
  checked as is;
* a CamelCase constructor with a recipe in :data:`LAYER_RECIPES` is built by it
  (``fn.Conv2D`` -> ``Conv2D(3, (3, 3))`` on ``(2, 6, 6, 2)`` images);
* any other constructor is tried with ``()``, ``(2,)``, ``(0.5,)`` and
  ``((2, 2),)`` on a ``(4, 6)`` and a ``(2, 4, 4, 3)`` input; the first that builds,
  initialises and runs is checked; if none does, it is listed as skipped (add a
  recipe).

The combinators ``serial`` and ``residual`` are checked on small compositions
(:data:`COMBINATOR_RECIPES`). Losses are every :class:`~fnnet.Loss` in ``fnnet.losses.__all__``, checked on
random logits with targets from :data:`LOSS_TARGETS` (default: rows of
probabilities, which every classification and regression loss accepts).

Each check is :func:`fnnet.check_layer` (w.r.t. params AND input, random output
cotangent) or :func:`fnnet.check_grads` (loss gradient w.r.t. the logits).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import textwrap
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

import fnnet as fn


class Recipe(NamedTuple):
    """How to build one test instance: ``build(constructor) -> Layer`` on ``shape`` inputs."""

    build: Callable
    shape: tuple
    random: bool = False  # needs a key in training (Dropout)
    # make_x(key) -> input, for inputs that are not a float array of ``shape``
    # (integer ids, tuples of arrays for parallel / FanInSum / FanInConcat)
    make_x: Callable | None = None


def _pair(shape_a, shape_b):
    """Two float inputs as a tuple (for parallel / FanInSum / FanInConcat)."""
    return lambda key: tuple(1.5 * jax.random.normal(k, s) for k, s in
                             zip(jax.random.split(key), (shape_a, shape_b)))


LAYER_RECIPES: dict[str, Recipe] = {
    "Dense": Recipe(lambda c: c(4), (5, 3)),
    "LeakyRelu": Recipe(lambda c: c(0.1), (4, 6)),
    "Conv2D": Recipe(lambda c: c(3, (3, 3)), (2, 6, 6, 2)),
    "MaxPool2D": Recipe(lambda c: c((2, 2)), (2, 4, 4, 3)),
    "AvgPool2D": Recipe(lambda c: c((2, 2)), (2, 4, 4, 3)),
    "Dropout": Recipe(lambda c: c(0.5), (6, 5), random=True),
    "LayerNorm": Recipe(lambda c: c(), (4, 6)),
    "BatchNorm": Recipe(lambda c: c(), (6, 4), random=True),
    "Flatten": Recipe(lambda c: c, (2, 3, 3, 2)),
    "Reshape": Recipe(lambda c: c((3, -1)), (2, 6, 2)),
    "Unembed": Recipe(lambda c: c(5), (2, 3, 4)),
    "MultiHeadAttention": Recipe(lambda c: c(2, causal=True), (2, 5, 4)),
    "RMSNorm": Recipe(lambda c: c(), (4, 6)),
    "PositionalEmbedding": Recipe(lambda c: c(6), (2, 5, 4)),
    "MLPBlock": Recipe(lambda c: c(4, 8), (2, 3, 4)),
    "TransformerBlock": Recipe(lambda c: c(8, 2), (2, 4, 8)),
    "Embedding": Recipe(lambda c: c(5, 3), (2, 4),
                        make_x=lambda key: jax.random.randint(key, (2, 4), 0, 5)),
    "SimpleRNN": Recipe(lambda c: c(4), (2, 3, 3)),
    "LSTM": Recipe(lambda c: c(4), (2, 3, 3)),
    "GRU": Recipe(lambda c: c(4), (2, 3, 3)),
    "Conv1D": Recipe(lambda c: c(3, 3, padding="CAUSAL", dilation=2), (2, 7, 2)),
    "ConvTranspose2D": Recipe(lambda c: c(3, 3, stride=2), (2, 3, 3, 2)),
    "RotaryEmbedding": Recipe(lambda c: c(100.0), (2, 2, 5, 4)),
    "GroupedQueryAttention": Recipe(lambda c: c(4, 2, bias=True), (2, 5, 8)),
    "SwiGLU": Recipe(lambda c: c(6), (2, 3, 4)),
    "LlamaBlock": Recipe(lambda c: c(8, 4, 12, num_kv_heads=1), (2, 4, 8)),
    "LastStep": Recipe(lambda c: c, (2, 4, 3)),
    "SelectStep": Recipe(lambda c: c(1), (2, 4, 3)),
    "MeanOverTime": Recipe(lambda c: c(), (2, 4, 3)),
    "MaxOverTime": Recipe(lambda c: c(), (2, 4, 3)),
    "Bidirectional": Recipe(lambda c: c(fn.GRU(3)), (2, 4, 2)),
}


def _left_padded(shape):
    """``(x, mask)``: a float input and a padding mask whose first example starts with two
    padding positions (under a causal mask their rows see no key at all)."""
    def make(key):
        mask = jnp.ones(shape[:2], bool).at[0, :2].set(False)
        return 1.5 * jax.random.normal(key, shape), mask
    return make

# extra instances worth checking beyond the recipe's (name -> Recipe)
EXTRA_CASES: dict[str, Recipe] = {
    "Conv2D": Recipe(lambda c: c(2, (3, 3), stride=2, padding="VALID"), (2, 7, 7, 1)),
    "Conv1D": Recipe(lambda c: c(2, 2, stride=2, padding="SAME", dilation=2), (2, 7, 2)),
    "ConvTranspose2D": Recipe(lambda c: c(2, (3, 2), stride=(2, 1), padding="SAME"),
                              (2, 3, 4, 2)),
    "MultiHeadAttention": Recipe(lambda c: c(2, causal=True, memory="lean", block_size=2),
                                 (2, 5, 4)),
    "GroupedQueryAttention": Recipe(lambda c: c(4, 1, memory="lean", block_size=2), (2, 5, 8),
                                    make_x=_left_padded((2, 5, 8))),
    # masked pooling: the input is (x, mask), a bool mask (selection) or float weights
    "MeanOverTime": Recipe(lambda c: c(), "(x, float weights)", make_x=lambda key: _sequence_and_mask(key, float)),
    "MaxOverTime": Recipe(lambda c: c(), "(x, bool mask)", make_x=lambda key: _sequence_and_mask(key, bool)),
    "Bidirectional": Recipe(lambda c: c(fn.LSTM(2)), (2, 3, 2)),
}

# combinators (lower-case names): name -> (build(combinator) -> Layer, input shape)
COMBINATOR_RECIPES: dict[str, Recipe] = {
    "serial": Recipe(lambda c: c(fn.Dense(5), fn.Tanh, fn.Dense(3)), (4, 6)),
    "residual": Recipe(lambda c: c(fn.serial(fn.Dense(6), fn.Tanh)), (4, 6)),
    "parallel": Recipe(lambda c: c(fn.Dense(3), fn.Tanh), None, make_x=_pair((4, 5), (4, 2))),
    "FanOut": Recipe(lambda c: fn.serial(c(2), fn.parallel(fn.Dense(3), fn.Tanh)), (4, 6)),
    "FanInSum": Recipe(lambda c: c, None, make_x=_pair((4, 5), (4, 5))),
    "FanInConcat": Recipe(lambda c: c(-1), None, make_x=_pair((4, 5), (4, 2))),
    "tie": Recipe(lambda c: c(fn.serial(fn.Dense(6), fn.Tanh, fn.Dense(6)), (0, "w"), (2, "w")),
                  (4, 6)),
}

_GUESS_ARGS = ((), (2,), (0.5,), ((2, 2),))
_GUESS_SHAPES = ((4, 6), (2, 4, 4, 3))


def _sequence_and_mask(key, kind):
    """``(x (2, 4, 3), mask (2, 4))``: the second sequence has its last two steps masked."""
    x = 1.5 * jax.random.normal(key, (2, 4, 3))
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    return x, (mask if kind is bool else mask * jnp.array([0.5, 1.0, 2.0, 1.0]))


def _probabilities(key, shape):
    p = jax.random.uniform(key, shape, jnp.float32, 0.05, 1.0)
    return p / p.sum(axis=-1, keepdims=True)


def _int_labels(key, shape):
    return jax.random.randint(key, shape[:-1], 0, shape[-1])


def _binary(key, shape):
    return jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)


def _plus_minus_one(key, shape):
    return 2 * _binary(key, shape) - 1


def _probabilities_and_row_mask(key, shape):
    mask = jnp.arange(shape[0]) % 3 != 1  # every third row masked
    return _probabilities(key, shape), mask


# loss name -> [(what, make_target(key, shape)) or (what, make_target, build(losses) -> Loss)]:
# a third entry checks a configured instance (``*_with`` settings, ``masked``)
LOSS_TARGETS: dict[str, list] = {
    "softmax_cross_entropy": [("integer labels", _int_labels), ("probabilities", _probabilities)],
    "sigmoid_binary_cross_entropy": [
        ("0/1 labels", _binary),
        ("pos_weight=3, 0/1 labels", _binary,
         lambda L: L.sigmoid_binary_cross_entropy_with(pos_weight=3.0))],
    "hinge": [("-1/+1 labels", _plus_minus_one)],
    "huber": [("probabilities", _probabilities),
              ("delta=0.3, probabilities", _probabilities, lambda L: L.huber_with(delta=0.3)),
              ("masked rows, probabilities", _probabilities_and_row_mask,
               lambda L: L.masked(L.huber))],
}
LOSS_SHAPE = (6, 4)


@dataclasses.dataclass(frozen=True)
class Case:
    """One thing to check."""

    name: str
    kind: str  # "layer" or "loss"
    run: Callable  # () -> GradCheckReport
    skip: str = ""  # reason, when it cannot be checked
    error: str = ""  # building the instance failed: a failure, reported as ERROR


@dataclasses.dataclass(frozen=True)
class Result:
    name: str
    kind: str
    status: str  # "PASS", "FAIL", "ERROR", "skipped"
    leaves: int
    autodiff_err: float | None
    fd_err: float | None
    seconds: float
    detail: str = ""
    report: object = None

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "ERROR")


def _layer_case(label: str, layer, shape, random: bool, seed: int, make_x=None) -> Case:
    def run():
        k_init, k_x, k_fwd = jax.random.split(jax.random.key(seed), 3)
        x = make_x(k_x) if make_x else 1.5 * jax.random.normal(k_x, shape, jnp.float32)
        input_shape = jax.tree.map(lambda a: tuple(a.shape[1:]), x)
        params = layer.init(k_init, input_shape)
        return fn.check_layer(layer, params, x, key=k_fwd if random else None, seed=seed)

    return Case(label, "layer", run)


def _first_working(ctor) -> tuple:
    """Try a few argument lists and input shapes; ``(layer, shape)`` or ``(None, reason)``."""
    for args in _GUESS_ARGS:
        try:
            layer = ctor(*args)
        except Exception:  # noqa: BLE001 - any failure means "not these arguments"
            continue
        if not isinstance(layer, fn.Layer):
            continue
        for shape in _GUESS_SHAPES:
            try:
                params = layer.init(jax.random.key(0), shape[1:])
                layer.fwd(params, jnp.ones(shape, jnp.float32),
                          key=jax.random.key(0) if layer.needs_key else None)
            except Exception:  # noqa: BLE001
                continue
            return layer, shape
    return None, "no recipe and no guessed arguments worked; add one to LAYER_RECIPES"


def layer_cases(namespace=fn, *, seed: int = 0) -> list[Case]:
    """Every layer found in ``namespace`` (fnnet by default), as checkable cases,
    then the combinators of :data:`COMBINATOR_RECIPES` that it has."""
    names = getattr(namespace, "__all__", None) or dir(namespace)
    cases = []
    for name, recipe in COMBINATOR_RECIPES.items():
        if hasattr(namespace, name):
            try:
                layer = recipe.build(getattr(namespace, name))
            except Exception as err:  # noqa: BLE001 - report it, do not crash
                cases.append(Case(name, "layer", None,
                                  error=f"building it failed: {type(err).__name__}: {err}"))
                continue
            label = layer.name if base_name(layer.name) == name else f"{name} in {layer.name}"
            cases.append(_layer_case(label, layer, recipe.shape, layer.needs_key, seed,
                                     recipe.make_x))
    for name in sorted(set(names)):
        if not name[:1].isupper() or not hasattr(namespace, name) or name in COMBINATOR_RECIPES:
            continue
        obj = getattr(namespace, name)
        if isinstance(obj, type):  # Layer, Loss, Static, report classes
            continue
        recipe = LAYER_RECIPES.get(name)
        if isinstance(obj, fn.Layer):
            if name in COMBINATOR_RECIPES:  # FanInSum: checked above with its recipe
                continue
            shape = recipe.shape if recipe else (4, 6)
            cases.append(_layer_case(obj.name, obj, shape, obj.needs_key, seed,
                                     recipe.make_x if recipe else None))
            continue
        if not callable(obj):
            continue
        if recipe is not None:
            recipes = [recipe] + ([EXTRA_CASES[name]] if name in EXTRA_CASES else [])
            for r in recipes:
                try:
                    layer = r.build(obj)
                except Exception as err:  # noqa: BLE001 - report it, do not crash
                    cases.append(Case(name, "layer", None,
                                      error=f"building it failed: {type(err).__name__}: {err}"))
                    continue
                label = f"{layer.name} on {r.shape}" if r is not recipe else layer.name
                if not label.startswith(name):  # a composition (TransformerBlock is a serial)
                    label = f"{name}({label})"
                cases.append(_layer_case(label, layer, r.shape, r.random or layer.needs_key, seed,
                                         r.make_x))
            continue
        layer, shape = _first_working(obj)
        if layer is None:
            cases.append(Case(name, "layer", None, skip=shape))
        else:
            cases.append(_layer_case(layer.name, layer, shape, layer.needs_key, seed))
    return cases


_LOGITS_AS_PARAMS = fn.named(
    "logits", lambda key, shape: None, lambda p, x, *, key=None: (p, None),
    lambda res, dy: (dy, None))


def loss_cases(losses=fn.losses, *, seed: int = 0) -> list[Case]:
    """Every :class:`~fnnet.Loss` in ``losses.__all__`` with its target kinds."""
    cases = []
    for name in getattr(losses, "__all__", dir(losses)):
        loss = getattr(losses, name, None)
        if not isinstance(loss, fn.Loss):
            continue
        for what, make_target, *build in LOSS_TARGETS.get(name, [("probabilities", _probabilities)]):
            def run(loss=build[0](losses) if build else loss, make_target=make_target):
                k_z, k_t = jax.random.split(jax.random.key(seed))
                logits = 2.0 * jax.random.normal(k_z, LOSS_SHAPE, jnp.float32)
                target = make_target(k_t, LOSS_SHAPE)
                return fn.check_grads(_LOGITS_AS_PARAMS, loss, logits, jnp.zeros_like(logits),
                                      target, seed=seed)

            cases.append(Case(f"{name} ({what})", "loss", run))
    return cases


def all_cases(*, seed: int = 0) -> list[Case]:
    return layer_cases(seed=seed) + loss_cases(seed=seed)


def run_case(case: Case) -> Result:
    if case.run is None:
        status = "ERROR" if case.error else "skipped"
        return Result(case.name, case.kind, status, 0, None, None, 0.0, case.error or case.skip)
    t0 = time.perf_counter()
    try:
        report = case.run()
    except Exception as err:  # noqa: BLE001 - a crash in a backward is a failure, not a traceback
        return Result(case.name, case.kind, "ERROR", 0, None, None, time.perf_counter() - t0,
                      f"{type(err).__name__}: {err}")
    fds = [leaf.fd_rel for leaf in report.leaves if leaf.fd_rel is not None]
    autos = [leaf.autodiff_rel for leaf in report.leaves]
    detail = ", ".join(f"{leaf.path} wrong" for leaf in report.failures)
    return Result(case.name, case.kind, "PASS" if report.ok else "FAIL", len(report.leaves),
                  max(autos) if autos else None, max(fds) if fds else None,
                  time.perf_counter() - t0, detail, report)


# the table fits a terminal of WIDTH columns: long names (a TransformerBlock's full
# composition) are cut to NAME_WIDTH, long results wrap under the result column
WIDTH, NAME_WIDTH = 100, 40


def short_name(name: str, width: int = NAME_WIDTH) -> str:
    """``name`` cut to ``width`` characters (ending in ``...``) when longer."""
    return name if len(name) <= width else name[:width - 3] + "..."


def format_table(results) -> str:
    """One row per result; every line at most :data:`WIDTH` columns."""
    cols = ("kind", "name", "leaves", "man-vs-auto", "man-vs-fd64", "result")
    fmt_e = lambda v: "-" if v is None else f"{v:.1e}"
    rows = [(r.kind, short_name(r.name), str(r.leaves), fmt_e(r.autodiff_err), fmt_e(r.fd_err),
             r.status + (f": {r.detail}" if r.detail else "")) for r in results]
    widths = [max(len(row[i]) for row in (cols, *rows)) for i in range(len(cols) - 1)]
    indent = sum(widths) + 2 * len(widths)

    def line(row):
        head = "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  "
        wrapped = textwrap.wrap(row[-1], max(WIDTH - indent, 20), break_long_words=False) or [""]
        return "\n".join([head + wrapped[0]] + [" " * indent + w for w in wrapped[1:]])

    return "\n".join([line(cols), *map(line, rows)])


def base_name(name: str) -> str:
    """``"Dense(4)" -> "Dense"``, ``"softmax_cross_entropy (integer labels)" -> "softmax_cross_entropy"``."""
    return name.split("(")[0].split(" ")[0]


def select(cases, only) -> list:
    """The cases whose base name matches one of the ``only`` patterns (case-insensitive,
    shell wildcards allowed: ``"soft*"``)."""
    if not only:
        return list(cases)
    pats = [o.lower() for o in only]
    return [c for c in cases if any(fnmatch.fnmatchcase(base_name(c.name).lower(), p) for p in pats)]


def check_all(*, only=None, seed: int = 0, verbose: bool = False, out=print) -> list[Result]:
    """Run every case (or those matching ``only``, see :func:`select`); print the table."""
    cases = select(all_cases(seed=seed), only)
    results = []
    for case in cases:
        result = run_case(case)
        results.append(result)
        if verbose and result.report is not None:
            out(str(result.report))
    if not results:
        return results
    out(format_table(results))
    failed = [r for r in results if r.failed]
    checked = [r for r in results if r.status != "skipped"]
    out(textwrap.fill(
        f"{len(checked) - len(failed)}/{len(checked)} checks passed"
        + (f"; FAILED: {', '.join(short_name(r.name) for r in failed)}" if failed else "")
        + (f"; {len(results) - len(checked)} skipped" if len(checked) < len(results) else ""),
        WIDTH, subsequent_indent="  ", break_long_words=False))
    return results
