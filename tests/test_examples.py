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


@pytest.mark.slow   # time budget of the default run
def test_vanishing_quick_mode_and_plot(tmp_path, capsys):
    png = tmp_path / "vanishing.png"
    assert vanishing.main(["--quick", "--no-progress", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    sig, relu = [line for line in out.splitlines() if "first/last layer ratio" in line]
    assert sig.lstrip().startswith("sigmoid") and "VANISHING" in sig
    assert relu.lstrip().startswith("relu") and "healthy" in relu
    assert float(re.search(r"ratio (\S+) ->", sig).group(1)) < 1e-4  # depth 6 in quick mode
    _assert_png(png)


def test_moons_quick_mode_and_plot(tmp_path, capsys):
    from fnnet.demos import moons

    png = tmp_path / "moons.png"
    assert moons.main(["--quick", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "337 params" in out and f"{moons.QUICK_STEPS} steps" in out
    assert float(re.search(r"final training accuracy (\d+\.\d+) %", out).group(1)) >= 90.0
    _assert_png(png)
    namespace = runpy.run_path(str(ROOT / "examples" / "moons.py"), run_name="not_main")
    assert namespace["main"] is moons.main


@pytest.mark.slow
def test_moons_reaches_micrograds_100_percent():
    from fnnet.demos import moons

    result = moons.run(moons.build_parser().parse_args(["--seeds", "5"]))
    assert [r["accuracy"] for r in result["runs"]] == [1.0] * 5


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


@pytest.mark.slow   # time budget of the default run
def test_digits_batchnorm_quick_mode_and_plot(tmp_path, capsys):
    from fnnet.demos import digits_batchnorm

    png = tmp_path / "bn.png"
    assert digits_batchnorm.main(["--quick", "--no-progress", "--depth", "2", "--plot",
                                  str(png)]) == 0
    out = capsys.readouterr().out
    accs = [float(a) for a in re.findall(r"test accuracy (\d+\.\d+) %", out)]
    assert len(accs) == 2 and min(accs) > 30.0  # chance is 10 %
    _assert_png(png)


def test_char_lstm_quick_mode_and_plot(tmp_path, capsys):
    from fnnet.demos import char_lstm

    namespace = runpy.run_path(str(ROOT / "examples" / "char_lstm.py"), run_name="not_main")
    assert namespace["main"] is char_lstm.main
    png = tmp_path / "char.png"
    assert char_lstm.main(["--quick", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    final = re.search(r"final \((\d+) steps.*validation (\S+) nats = (\S+) bits/char", out)
    assert int(final.group(1)) == char_lstm.QUICK["steps"]
    assert float(final.group(3)) < 6.0  # uniform over the 103 characters: 6.69 bits/char
    assert "characters/s" in out and "sample (temperature 0.8):\nThe " in out
    _assert_png(png)


@pytest.mark.slow
def test_char_lstm_manual_and_autodiff_give_the_same_losses(capsys):
    from fnnet.demos import char_lstm

    losses = {}
    for method in ("manual", "autodiff"):
        assert char_lstm.main(["--quick", "--method", method]) == 0
        out = capsys.readouterr().out
        losses[method] = [float(v) for v in re.findall(r"validation (\d+\.\d+) nats", out)]
    np.testing.assert_allclose(losses["manual"], losses["autodiff"], rtol=1e-4)


@pytest.mark.slow   # time budget; generate and the char GPT are tested in test_generate/test_gpt
def test_char_gpt_quick_mode_and_plot(tmp_path, capsys):
    from fnnet.demos import char_gpt

    namespace = runpy.run_path(str(ROOT / "examples" / "char_gpt.py"), run_name="not_main")
    assert namespace["main"] is char_gpt.main
    png = tmp_path / "gpt.png"
    assert char_gpt.main(["--quick", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    final = re.search(r"final \((\d+) steps.*validation (\S+) nats = (\S+) bits/char", out)
    assert int(final.group(1)) == char_gpt.QUICK["steps"]
    assert float(final.group(3)) < 6.0  # uniform over the 103 characters: 6.69 bits/char
    assert "characters/s" in out and "sample (temperature 0.8):\nThe " in out
    _assert_png(png)


@pytest.mark.slow
def test_char_gpt_manual_autodiff_and_lean_give_the_same_losses(capsys):
    from fnnet.demos import char_gpt

    losses = {}
    for flags in (["--method", "manual"], ["--method", "autodiff"], ["--memory", "lean"]):
        assert char_gpt.main(["--quick", *flags]) == 0
        out = capsys.readouterr().out
        losses[flags[1]] = [float(v) for v in re.findall(r"validation (\d+\.\d+) nats", out)]
    np.testing.assert_allclose(losses["manual"], losses["autodiff"], rtol=1e-4)
    np.testing.assert_allclose(losses["manual"], losses["lean"], rtol=1e-4)


def test_dp_and_feedback_alignment_examples_are_thin_wrappers():
    from fnnet.demos import dp_sgd, feedback_alignment

    for script, module in [("dp_sgd.py", dp_sgd), ("feedback_alignment.py", feedback_alignment)]:
        namespace = runpy.run_path(str(ROOT / "examples" / script), run_name="not_main")
        assert namespace["main"] is module.main, script


@pytest.mark.slow
def test_dp_sgd_accuracy_against_the_noise_multiplier(tmp_path, capsys):
    # the quick mode runs in notebooks/06_beyond_backprop.ipynb; this is the full run
    from fnnet.demos import dp_sgd

    png = tmp_path / "dp.png"
    assert dp_sgd.main(["--no-progress", "--plot", str(png), "--sigmas", "1", "4"]) == 0
    rows = dict(re.findall(r"^\s*(\S+)\s+\S+\s+(\d+\.\d+) %$", capsys.readouterr().out, re.M))
    assert float(rows["non-private"]) > 95 and float(rows["1"]) > 93 and float(rows["4"]) > 90
    _assert_png(png)


@pytest.mark.slow
def test_feedback_alignment_learns_and_aligns(tmp_path):
    from fnnet.demos import feedback_alignment

    args = feedback_alignment.build_parser().parse_args(["--no-progress"])
    result = feedback_alignment.run(args)
    fa, bp = result["feedback alignment"], result["backprop"]
    assert fa["test_accuracy"][-1] > 0.94 and bp["test_accuracy"][-1] > 0.96
    angles = fa["angles"]
    assert np.all(angles[-1, :2] < angles[0, :2] - 20)     # hidden layers align
    np.testing.assert_allclose(angles[:, 2], 0, atol=1e-2)  # the output layer is exact
    _assert_png(Path(feedback_alignment.plot(result, str(tmp_path / "fa.png"))))
