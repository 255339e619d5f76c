"""The comparison engine behind :mod:`fnnet.gradcheck` and :mod:`fnnet.second_order`:
a manual gradient against ``jax.grad`` and against float64 central finite
differences, leaf by leaf, with the tolerances and the kink handling that
:mod:`fnnet.gradcheck`'s docstring describes. The report types live here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import is_float

__all__ = ["GradCheckReport", "LeafCheck", "autodiff_rtol", "compare", "random_like", "discrete",
           "cast_floats", "ABS_FLOOR"]

_AUTODIFF_RTOL = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


# leaves whose manual-autodiff difference is below ABS_FLOOR * rtol * (the largest
# gradient entry of the whole check) pass: see _check.
ABS_FLOOR = 1e-2


def autodiff_rtol(dtype) -> float:
    """Default manual-vs-autodiff tolerance for a dtype."""
    return _AUTODIFF_RTOL.get(jnp.dtype(dtype).name, 1e-5)


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """One leaf's result. ``fd_rel`` is the worst direction's error (None if not checked)."""

    path: str
    shape: tuple
    autodiff_abs: float
    autodiff_rel: float
    fd_rel: float | None
    fd_status: str  # "ok", "FAIL", "kink", "off" (disabled by the caller), "intended"
    autodiff_ok: bool
    # the learning rule (fnnet.rules, e.g. "feedback alignment") that makes this leaf's
    # gradient differ from the true gradient on purpose; "" for an ordinary leaf
    rule: str = ""

    @property
    def ok(self) -> bool:
        return self.autodiff_ok and self.fd_status in ("ok", "kink", "off", "intended")


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """Per-leaf errors of manual vs autodiff vs finite differences, with tolerances."""

    title: str
    leaves: tuple
    dtype: str
    autodiff_rtol: float
    fd_rtol: float
    fd_eps: float
    num_directions: int
    note: str = ""
    # for a failing whole-model check: the layers whose own backward disagrees with
    # jax.vjp of their forward (fn.gradient_diagnostics), one line each, printed first
    located: tuple = ()

    @property
    def ok(self) -> bool:
        return all(leaf.ok for leaf in self.leaves)

    @property
    def failures(self) -> tuple:
        return tuple(leaf for leaf in self.leaves if not leaf.ok)

    def __bool__(self) -> bool:  # `assert report` reads naturally
        return self.ok

    def __str__(self) -> str:
        head = [f"gradient check: {self.title}",
                *(f"  ! {line}" for line in self.located),
            f"  manual vs autodiff: {self.dtype}, highest matmul precision, rtol {self.autodiff_rtol:.0e}",
            f"  manual vs central finite differences: float64, h={self.fd_eps:.0e}, "
            f"{self.num_directions} random direction(s) per leaf, rtol {self.fd_rtol:.0e}",
        ]
        if self.note:   # wrapped at 100 columns, as the rest of the report's head
            head.append(textwrap.fill(self.note, 100, initial_indent="  note: ",
                                      subsequent_indent="    ", break_long_words=False))
        cols = ("leaf", "shape", "|man-auto|", "rel err", "fd rel err", "result")
        rows = []
        for leaf in self.leaves:
            fd = "-" if leaf.fd_rel is None else f"{leaf.fd_rel:.1e}"
            status = "ok" if leaf.ok else "FAIL"
            if leaf.fd_status == "kink":
                status += " (fd skipped: kink)"
            elif leaf.rule:
                status += f" (intentionally not the true gradient: {leaf.rule})"
            elif leaf.fd_status == "FAIL":
                status += " (vs finite differences)"
            if not leaf.autodiff_ok:
                status += " (vs autodiff)"
            rows.append((leaf.path, str(leaf.shape), f"{leaf.autodiff_abs:.1e}",
                         f"{leaf.autodiff_rel:.1e}", fd, status))
        widths = [max(len(r[i]) for r in (cols, *rows)) for i in range(len(cols))]
        fmt = lambda r: "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        n_ok = sum(leaf.ok for leaf in self.leaves)
        verdict = "PASS" if self.ok else "FAIL"
        return "\n".join([*head, fmt(cols), *map(fmt, rows),
                          f"  {verdict}: {n_ok}/{len(self.leaves)} leaves agree"])

    __repr__ = __str__


def _to64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if is_float(a) else a, tree)


def cast_floats(tree, dtype):
    """The float leaves of ``tree`` (e.g. a target, or a ``(target, mask)`` pair) in ``dtype``."""
    return jax.tree.map(lambda a: jnp.asarray(a, dtype) if is_float(a) else a, tree)


def discrete(tree):
    """The non-float leaves of a residual tree: the kink/branch signature."""
    return [a for a in jax.tree.leaves(tree) if not is_float(a)]


@contextlib.contextmanager
def _float64():
    if jax.config.jax_enable_x64:
        yield ""
        return
    with jax.enable_x64(True):
        yield ("float64 was off; it was enabled locally for the finite differences "
               "(enable it globally with jax.config.update('jax_enable_x64', True))")


def input_label(path: str, names=("dx",)) -> str:
    """A check_layer row's name: ``theta = (params, x, ...)`` paths ``[0]...`` stay the
    params' rows, ``[1]...`` become ``dx...`` (``[1][0]`` -> ``dx[0]`` for a tuple input),
    ``[2]...`` the next name in ``names``."""
    for i, name in enumerate(names, start=1):
        head = f"[{i}]"
        if path.startswith(head):
            return name + path[len(head):]
    return path


def compare(title, theta, scalar, manual, signature, *, key, rtol, fd_rtol, fd_eps,
           num_directions, finite_differences, reference=None, rules=None,
           rule_vs_autodiff=False, label=None):
    """Shared engine: ``scalar(theta) -> S``, ``manual(theta) -> grads``,
    ``signature(theta) -> list of non-float residual arrays``.

    Learning rules (``fnnet.rules``): ``rules`` maps leaf indices to the rule that
    makes their manual gradient differ from ``scalar``'s true gradient on purpose.
    Their finite-difference mismatch is reported as ``intended``; so is their
    autodiff mismatch when ``rule_vs_autodiff`` (no autodiff reference knows the
    rule). ``reference(theta)`` replaces ``jax.grad(scalar)`` as the autodiff side
    (``check_grads`` passes autodiff through the rules' own VJPs)."""
    rules = rules or {}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(theta)
    float_idx = [i for i, (_, a) in enumerate(leaves) if is_float(a)]
    dtype = jnp.result_type(*[leaves[i][1] for i in float_idx]) if float_idx else jnp.float32
    rtol = autodiff_rtol(dtype) if rtol is None else rtol

    with jax.default_matmul_precision("highest"):
        m_tree = jax.jit(manual)(theta)
        a = jax.tree.leaves(jax.jit(reference or jax.grad(scalar))(theta))
    if jax.tree.structure(m_tree) != treedef:  # else leaves would be compared out of place
        raise ValueError(f"{title}: the manual gradient has tree structure "
                         f"{jax.tree.structure(m_tree)}, expected the structure of what is "
                         f"differentiated, {treedef}; a backward must return dparams with "
                         f"exactly the params' tree (and dx like x).")
    m = jax.tree.leaves(m_tree)

    auto_abs, auto_rel, auto_scale = {}, {}, {}
    for i in float_idx:
        mi, ai = np.asarray(m[i], np.float64), np.asarray(a[i], np.float64)
        if mi.shape != ai.shape:
            raise ValueError(f"{title}: the manual gradient for "
                             f"{jax.tree_util.keystr(leaves[i][0])} has shape {mi.shape}, "
                             f"expected {ai.shape} (the shape of that parameter)")
        err = float(np.max(np.abs(mi - ai))) if mi.size else 0.0
        scale = max(float(np.max(np.abs(ai))) if ai.size else 0.0,
                    float(np.max(np.abs(mi))) if mi.size else 0.0)
        auto_abs[i], auto_scale[i] = err, scale
        auto_rel[i] = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)

    # A gradient that cancels to exactly 0 (a bias feeding BatchNorm) is 0 only up to
    # the rounding of the terms that cancel, which are of the order of the largest
    # gradient in the check: such leaves pass below this absolute floor.
    floor = ABS_FLOOR * rtol * max(auto_scale.values(), default=0.0)
    fd_rel = {i: None for i in float_idx}
    fd_status = {i: "off" for i in float_idx}  # each checked leaf gets ok / FAIL / kink
    note = "finite differences disabled by the caller" if not finite_differences else ""
    if finite_differences:
        with _float64() as note:
            _finite_differences(theta, scalar, manual, signature, leaves, treedef, float_idx,
                                key, fd_rtol, fd_eps, num_directions, fd_rel, fd_status)
    for i in rules:
        if fd_status.get(i) == "FAIL":
            fd_status[i] = "intended"

    label = label or (lambda path: path)
    rows = tuple(
        LeafCheck(path=label(jax.tree_util.keystr(leaves[i][0]) or "(root)"),
                  shape=tuple(jnp.shape(leaves[i][1])), autodiff_abs=auto_abs[i],
                  autodiff_rel=auto_rel[i], fd_rel=fd_rel[i], fd_status=fd_status[i],
                  autodiff_ok=(auto_rel[i] <= rtol or auto_abs[i] <= floor
                               or (rule_vs_autodiff and i in rules)),
                  rule=rules.get(i, ""))
        for i in float_idx)
    return GradCheckReport(title=title, leaves=rows, dtype=jnp.dtype(dtype).name,
                           autodiff_rtol=rtol, fd_rtol=fd_rtol, fd_eps=fd_eps,
                           num_directions=num_directions, note=note)


def _finite_differences(theta, scalar, manual, signature, leaves, treedef, float_idx, key,
                        fd_rtol, fd_eps, num_directions, fd_rel, fd_status):
    theta64 = _to64(theta)
    with jax.default_matmul_precision("highest"):
        S = jax.jit(scalar)
        sig = jax.jit(signature)
        g64 = [np.asarray(g) for g in jax.tree.leaves(jax.jit(manual)(theta64))]
        base_leaves = jax.tree.leaves(theta64)
        s0 = float(S(theta64))
        sig0 = [np.asarray(s) for s in sig(theta64)]
        atol = 1e-9 * max(1.0, abs(s0))
        rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))

        def at(i, delta):
            new = list(base_leaves)
            new[i] = base_leaves[i] + delta
            return jax.tree_util.tree_unflatten(treedef, new)

        def same_branch(t):
            return all(np.array_equal(a, np.asarray(b)) for a, b in zip(sig0, sig(t)))

        for i in float_idx:
            shape = np.shape(base_leaves[i])
            g = g64[i]
            gnorm = float(np.linalg.norm(g))
            worst, checked = 0.0, 0
            for _ in range(num_directions):
                for attempt in range(8):
                    v = rng.standard_normal(shape)
                    v /= max(np.linalg.norm(v), 1e-300)
                    h = fd_eps / (10 ** (attempt // 4))
                    plus, minus = at(i, h * v), at(i, -h * v)
                    if same_branch(plus) and same_branch(minus):
                        break
                else:
                    continue  # every try crossed a kink
                fd = (float(S(plus)) - float(S(minus))) / (2 * h)
                gv = float(np.sum(g * v))
                err = abs(fd - gv)
                scale = max(gnorm, abs(fd))
                if err > atol + fd_rtol * scale:
                    worst = max(worst, math.inf if scale == 0 else err / scale)
                    fd_status[i] = "FAIL"
                else:
                    worst = max(worst, err / scale if scale > 0 else 0.0)
                checked += 1
            if checked == 0:
                fd_status[i] = "kink"
            else:
                fd_rel[i] = worst
                if fd_status[i] != "FAIL":
                    fd_status[i] = "ok"


def random_like(key, tree):
    """Standard-normal arrays shaped like the (abstract) arrays of ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype)
                                        for k, a in zip(keys, leaves)])
