"""The examples: quick modes, --plot, and the accuracy targets (run in-process)."""

import re
import runpy
from pathlib import Path

import numpy as np
import pytest

from fnnet.demos import breast_cancer, digits, vanishing

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def test_examples_are_thin_wrappers_of_the_package_demos():
    for script, module in [("breast_cancer.py", breast_cancer), ("digits_mlp.py", digits),
                           ("vanishing_gradients.py", vanishing)]:
        namespace = runpy.run_path(str(ROOT / "examples" / script), run_name="not_main")
        assert namespace["main"] is module.main, script


def _accuracy(out: str) -> float:
    return float(re.search(r"test  accuracy (\d+\.\d+) %", out).group(1))


def _assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 20_000, f"{path}: not a real plot ({len(data)} bytes)"


def test_digits_quick_mode_and_plot(tmp_path, capsys):
    png = tmp_path / "digits.png"
    assert digits.main(["--quick", "--no-progress", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"{digits.QUICK_EPOCHS} epochs" in out
    assert _accuracy(out) > 80.0  # chance is 10 %
    _assert_png(png)


def test_breast_cancer_quick_mode_and_plot(tmp_path, capsys):
    png = tmp_path / "cancer.png"
    assert breast_cancer.main(["--quick", "--no-progress", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"{breast_cancer.QUICK_EPOCHS} epochs" in out
    assert _accuracy(out) > 80.0  # the majority class is 63 %
    _assert_png(png)


def test_vanishing_quick_mode_and_plot(tmp_path, capsys):
    png = tmp_path / "vanishing.png"
    assert vanishing.main(["--quick", "--no-progress", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    sig, relu = [line for line in out.splitlines() if "first/last layer ratio" in line]
    assert sig.lstrip().startswith("sigmoid") and "VANISHING" in sig
    assert relu.lstrip().startswith("relu") and "healthy" in relu
    assert float(re.search(r"ratio (\S+) ->", sig).group(1)) < 1e-4  # depth 6 in quick mode
    _assert_png(png)


def test_xor_demo_plot_uses_plot_xor(tmp_path, capsys):
    from fnnet.demos import xor

    png = tmp_path / "xor.png"
    assert xor.main(["--epochs", "500", "--hidden", "8", "--activation", "tanh",
                     "--plot", str(png)]) == 0
    _assert_png(png)


def test_standardize_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.normal(3, 2, (50, 4)), rng.normal(-5, 9, (20, 4))
    a, b = breast_cancer.standardize(x_tr, x_te)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(a.std(0), 1, rtol=1e-12)
    np.testing.assert_allclose(b, (x_te - x_tr.mean(0)) / x_tr.std(0), rtol=1e-12)
    assert abs(b.mean()) > 1  # NOT re-centred on its own statistics
    (xt, yt), (xs, ys) = breast_cancer.load()
    assert xt.shape == (426, 30) and xs.shape == (143, 30) and yt.shape == (426, 1)
    np.testing.assert_allclose(xt.mean(0), 0, atol=1e-5)


def _args(module, *argv):
    return module.build_parser().parse_args(["--no-progress", *argv])


def test_digits_reaches_the_96_percent_target():
    result = digits.run(_args(digits))
    assert result["test_accuracy"] >= 0.96, result["test_accuracy"]
    assert min(result["per_class_accuracy"]) >= 0.85


def test_breast_cancer_reaches_the_96_percent_target():
    result = breast_cancer.run(_args(breast_cancer))
    assert result["test_accuracy"] >= 0.96, result["test_accuracy"]
    assert result["malignant_recall"] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_accuracy_targets_hold_for_other_splits(seed):
    assert digits.run(_args(digits, "--seed", str(seed)))["test_accuracy"] >= 0.96
    assert breast_cancer.run(_args(breast_cancer, "--seed", str(seed)))["test_accuracy"] >= 0.95


def test_the_epoch_loop_fallback_matches_the_metrics_of_fit(monkeypatch):
    """Without fit's validation/metrics support the demos evaluate epoch by epoch."""
    from fnnet.demos import _common

    monkeypatch.setattr(_common, "_fit_evaluates", lambda: False)
    result = breast_cancer.run(_args(breast_cancer, "--quick"))
    h = result["history"]
    assert h["loss"].shape == h["test_accuracy"].shape == (breast_cancer.QUICK_EPOCHS,)
    assert h["test_loss"][-1] < h["test_loss"][0] and result["test_accuracy"] > 0.8
