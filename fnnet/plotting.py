"""Plots for training runs and gradient diagnostics (matplotlib, imported lazily).

Every helper draws into ``ax`` (a matplotlib Axes) when given one and returns it;
with ``ax=None`` it draws into ``matplotlib.pyplot.gca()``. Scripts that only
save files can avoid pyplot altogether::

    fig = fnnet.plotting.new_figure(ncols=2)          # a bare Figure, no GUI backend
    plot_loss_curves({"train": history["loss"]}, ax=fig.axes[0])
    plot_gradient_norms(diag, ax=fig.axes[1])
    fig.savefig("run.png")

matplotlib is an optional dependency: ``pip install "fnnet[examples]"``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["new_figure", "plot_loss_curves", "plot_gradient_norms", "plot_vjp_errors",
           "plot_decision_boundary", "plot_xor", "save"]

EXTRA_HINT = 'fnnet\'s plots need matplotlib: pip install "fnnet[examples]" (or pip install matplotlib)'


def _matplotlib():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(EXTRA_HINT) from err
    return matplotlib


def _axes(ax):
    if ax is not None:
        return ax
    _matplotlib()
    import matplotlib.pyplot as plt

    return plt.gca()


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 5.5, height: float = 4.0):
    """A bare ``matplotlib.figure.Figure`` with ``nrows x ncols`` axes (no pyplot, no GUI)."""
    _matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    fig.subplots(nrows, ncols, squeeze=False)
    return fig


def save(fig, path) -> str:
    """Save ``fig`` as an image (the format from the file name, e.g. ``.png``)."""
    fig.savefig(path, dpi=110)
    return str(path)


def plot_loss_curves(curves, ax=None, *, log: bool = True, title: str = "training loss",
                     xlabel: str = "epoch"):
    """Plot loss curves: ``curves`` maps a label to a 1-d array (or is one array).

    A ``fit`` history works directly: ``plot_loss_curves(history)`` draws its loss
    entries (``"loss"``, ``"val_loss"``, ...) and ignores the rest (metrics, notes).
    """
    ax = _axes(ax)
    if not isinstance(curves, dict):
        curves = {"loss": curves}
    elif "loss" in curves:  # a fit history: only the losses share an axis
        curves = {k: v for k, v in curves.items() if "loss" in str(k)}
    drawn = 0
    for label, values in curves.items():
        try:
            values = np.asarray(values, np.float64)
        except (TypeError, ValueError):
            continue
        if values.ndim != 1 or values.size == 0:
            continue
        ax.plot(np.arange(1, values.size + 1), values, label=str(label))
        drawn += 1
    if not drawn:
        raise ValueError("plot_loss_curves: no 1-d numeric curve to draw")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def _param_rows(diag):
    rows = diag.param_layers
    if not rows:
        raise ValueError("plot_gradient_norms: the model has no layer with params")
    return rows


def plot_gradient_norms(diag, ax=None, *, label: str | None = None, marker: str = "o",
                        title: str = "gradient norm per layer (dotted: vanishing threshold)"):
    """Per-layer gradient norms of a :class:`~fnnet.diagnostics.GradientDiagnostics`.

    One point per layer WITH params (x: layer index in the model, y: the global
    norm of that layer's params gradient), log scale. Call it several times on the
    same ``ax`` (with ``label=``) to compare models. The horizontal dotted line
    is the vanishing threshold: ``vanishing_ratio`` times the last layer's norm.
    """
    ax = _axes(ax)
    rows = _param_rows(diag)
    idx = np.array([r.index for r in rows])
    norms = np.array([r.grad_norm for r in rows], np.float64)
    norms = np.where(norms > 0, norms, np.nan)  # log scale: a 0 cannot be drawn
    line, = ax.plot(idx, norms, marker=marker, label=label or diag.title)
    ax.axhline(diag.vanishing_ratio * rows[-1].grad_norm, color=line.get_color(), ls=":",
               lw=1, alpha=0.7)
    ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer index (layers with params)")
    ax.set_ylabel("||dL/dparams||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_vjp_errors(diag, ax=None, *, title: str = "manual vs jax.vjp, per layer"):
    """Bar chart of each layer's manual-vs-autodiff relative error (log scale).

    The dashed line is the tolerance; bars above it (red) are wrong backwards.
    Exact agreement (error 0) is drawn at the bottom of the axis, labelled ``exact``.
    """
    ax = _axes(ax)
    rows = [r for r in diag.layers if r.vjp_error is not None]
    if not rows:
        raise ValueError("plot_vjp_errors: no errors recorded (run gradient_diagnostics "
                         "with check_vjp=True)")
    errs = np.array([r.vjp_error for r in rows], np.float64)
    tol = max(r.vjp_rtol for r in rows)
    finite = errs[np.isfinite(errs) & (errs > 0)]
    floor = min(finite.min() / 10, tol / 1e3) if finite.size else tol / 1e3
    top = max(np.nanmax(np.where(np.isfinite(errs), errs, floor)), tol) * 10
    shown = np.where(errs > 0, np.where(np.isfinite(errs), errs, top), floor)
    colors = ["tab:red" if not r.vjp_ok else "tab:green" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x, shown - floor, bottom=floor, color=colors)
    ax.axhline(tol, color="k", ls="--", lw=1, label=f"tolerance {tol:.0e}")
    many = len(rows) > 8
    if many and np.any(errs == 0):
        ax.plot([], [], " ", label="no bar: exactly 0")
    for xi, e in zip(x, errs):
        if e == 0 and not many:
            ax.text(xi, floor * 1.3, "0\n(exact)", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(floor, top)
    ax.set_xticks(x, [f"{r.index} {r.name}" if many else f"{r.index}\n{r.name}" for r in rows],
                  fontsize=7, rotation=90 if many else 0)
    ax.set_ylabel("relative error")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def plot_decision_boundary(predict, x, y, ax=None, *, resolution: int = 200,
                           margin: float = 0.5, threshold: float = 0.5,
                           title: str = "decision boundary"):
    """Filled contour of ``predict`` over the plane, with the data on top.

    Args:
      predict: ``f(points (N, 2)) -> probabilities (N,) or (N, 1)`` of class 1.
      x: data points ``(n, 2)``; y: labels ``(n,)`` or ``(n, 1)`` in {0, 1}.
      resolution: grid points per axis; margin: space around the data.
      threshold: the probability drawn as the boundary (black line).
    """
    ax = _axes(ax)
    x = np.asarray(x, np.float64)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot_decision_boundary: x must have shape (n, 2), got {x.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1).astype(np.float32)
    probs = np.asarray(predict(grid), np.float64).reshape(g0.shape)
    filled = ax.contourf(g0, g1, probs, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
    ax.contour(g0, g1, probs, levels=[threshold], colors="k", linewidths=1.5)
    ax.figure.colorbar(filled, ax=ax, label="p(y = 1)")
    for label, marker in ((0, "o"), (1, "s")):
        pts = x[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], c="tab:blue" if label == 0 else "tab:red",
                   marker=marker, edgecolors="k", s=80, label=f"y = {label}", zorder=3)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    ax.legend(loc="upper center", fontsize="small")
    return ax


def plot_xor(model, params, history, x, y, path, *, output: str = "logit") -> str:
    """Save a two-panel figure: the loss curve and the decision boundary of ``model``.

    ``output="logit"``: the model ends in a logit (probability = sigmoid);
    ``output="prob"``: it already outputs probabilities. Returns ``path``.
    """
    import jax

    from .core import apply

    if output not in ("logit", "prob"):
        raise ValueError(f"plot_xor: output must be 'logit' or 'prob', got {output!r}")

    def predict(points):
        out = apply(model, params, points)
        return jax.nn.sigmoid(out) if output == "logit" else out

    fig = new_figure(ncols=2)
    ax_loss, ax_db = fig.axes
    plot_loss_curves(history if isinstance(history, dict) else {"loss": history}, ax=ax_loss)
    plot_decision_boundary(predict, x, y, ax=ax_db, title="decision boundary (p = 0.5 in black)")
    return save(fig, path)
