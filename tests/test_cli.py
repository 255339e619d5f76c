"""The `fnnet` command line: --help everywhere, exit codes, argparse errors, gradcheck."""

import os
import subprocess
import sys

import pytest

import fnnet as fn
from fnnet import cli
from fnnet.demos import gradcheck_all


def run_cli(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``fnnet ARGV``, run in-process."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, prog", [
    ([], "fnnet"),
    (["gradcheck"], "fnnet gradcheck"),
    (["train"], "fnnet train"),
    (["train", "digits"], "fnnet train digits"),
    (["train", "breast-cancer"], "fnnet train breast-cancer"),
    (["vanishing"], "fnnet vanishing"),
    (["xor"], "xor"),
])
def test_every_command_has_help(argv, prog, capsys):
    code, out, _ = run_cli([*argv, "--help"], capsys)
    assert code == 0
    assert out.startswith(f"usage: {prog}")
    if argv == []:
        for command in ("xor", "gradcheck", "train", "vanishing"):
            assert command in out
    if argv == ["train"]:
        assert "breast-cancer" in out and "digits" in out


@pytest.mark.parametrize("argv, message", [
    ([], "required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["gradcheck", "--bogus"], "unrecognized arguments: --bogus"),
    (["gradcheck", "--seed", "x"], "invalid int value"),
    (["train"], "required"),
    (["train", "mnist"], "invalid choice: 'mnist'"),
    (["train", "digits", "--epochs", "0"], "expected a positive integer, got 0"),
    (["train", "digits", "--lr", "-1"], "expected a positive finite number"),
    (["train", "breast-cancer", "--test-size", "1.5"], "expected a number in (0, 1)"),
    (["train", "breast-cancer", "--nope"], "unrecognized arguments: --nope"),
    (["train", "digits", "--test-size", "0.001"], "argument --test-size: 0.001 does not work"),
    (["train", "breast-cancer", "--test-size", "0.999"], "train set will be empty"),
    (["vanishing", "--depth", "ten"], "expected a positive integer, got 'ten'"),
    (["vanishing", "--plot", "/no/such/folder/v.png"], "does not exist"),
    (["train", "digits", "--plot", "curves"], "has no extension"),
    (["xor", "--activation", "cosh"], "invalid choice: 'cosh'"),
])
def test_bad_flags_are_usage_errors_with_exit_code_2(argv, message, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert "usage:" in err and message in err
    assert "Traceback" not in err + out


def test_gradcheck_passes_on_builtins_and_prints_a_table(capsys):
    code, out, _ = run_cli(["gradcheck", "--only", "Dense", "relu", "Sigmoid", "softmax_*"],
                           capsys)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["kind", "name", "leaves"]
    names = [line.split()[1] for line in lines[1:-1]]
    assert names == ["Dense(4)", "Relu", "Sigmoid", "softmax_cross_entropy",
                     "softmax_cross_entropy"]
    assert all(line.rstrip().endswith("PASS") for line in lines[1:-1])
    assert lines[-1] == "5/5 checks passed"


def test_gradcheck_discovers_layers_from_the_namespace():
    names = {c.name.split("(")[0] for c in gradcheck_all.layer_cases()}
    public = {n for n in fn.__all__ if n[:1].isupper() and isinstance(
        getattr(fn, n), fn.Layer) or (n[:1].isupper() and n in gradcheck_all.LAYER_RECIPES)}
    assert {"Dense", "Relu", "Sigmoid", "Tanh", "Identity", "LeakyRelu"} <= names
    assert public <= names
    losses = {c.name.split(" ")[0] for c in gradcheck_all.loss_cases()}
    assert losses == {n for n in fn.losses.__all__ if isinstance(getattr(fn.losses, n), fn.Loss)}


_DENSE = fn.Dense


def _broken_dense(features, **kwargs):
    good = _DENSE(features, **kwargs)

    def bwd(res, dy):
        dparams, dx = good.bwd(res, dy)
        return {"w": dparams["w"], "b": dparams["b"] / dy.shape[0]}, dx  # a stray 1/n

    return fn.named(good.name, good.init, good.fwd, bwd)


def test_gradcheck_exits_1_when_a_layer_is_broken(monkeypatch, capsys):
    monkeypatch.setattr(fn, "Dense", _broken_dense)
    code, out, _ = run_cli(["gradcheck", "--only", "Dense", "Relu"], capsys)
    assert code == 1
    rows = {line.split()[1]: line for line in out.splitlines()[1:-1]}
    assert "FAIL" in rows["Dense(4)"] and "[0]['b'] wrong" in rows["Dense(4)"]
    assert rows["Relu"].rstrip().endswith("PASS")
    assert out.splitlines()[-1] == "1/2 checks passed; FAILED: Dense(4)"


def test_gradcheck_reports_a_crashing_backward_as_error_not_traceback(monkeypatch, capsys):
    def crashing(features):
        good = _DENSE(features)
        return fn.named(good.name, good.init, good.fwd, lambda res, dy: 1 / 0)

    monkeypatch.setitem(gradcheck_all.LAYER_RECIPES, "Dense",
                        gradcheck_all.Recipe(lambda c: crashing(4), (5, 3)))
    code, out, err = run_cli(["gradcheck", "--only", "Dense"], capsys)
    assert code == 1
    assert "ERROR: ZeroDivisionError" in out and "Traceback" not in out + err


def test_gradcheck_exits_1_when_a_loss_is_broken(monkeypatch, capsys):
    mse = fn.losses.mean_squared_error
    broken = fn.Loss(mse.fwd, lambda res, g: 2 * mse.bwd(res, g))
    monkeypatch.setattr(fn.losses, "mean_squared_error", broken)
    code, out, _ = run_cli(["gradcheck", "--only", "mean_squared_error"], capsys)
    assert code == 1 and "mean_squared_error (probabilities)" in out and "FAIL" in out


def test_gradcheck_a_recipe_that_cannot_build_is_an_error(monkeypatch, capsys):
    monkeypatch.setitem(gradcheck_all.LAYER_RECIPES, "Dense",
                        gradcheck_all.Recipe(lambda c: c(-1), (5, 3)))
    code, out, _ = run_cli(["gradcheck", "--only", "Dense"], capsys)
    assert code == 1 and "ERROR: building it failed: ValueError" in out


def test_gradcheck_only_matching_nothing_is_an_error(capsys):
    code, out, err = run_cli(["gradcheck", "--only", "NoSuchLayer"], capsys)
    assert code == 1 and "nothing matches" in err and out == ""


def test_gradcheck_list(capsys):
    code, out, _ = run_cli(["gradcheck", "--list"], capsys)
    assert code == 0 and "layer  Dense(4)" in out and "loss   softmax_cross_entropy" in out


def test_xor_delegates_to_the_xor_demo(capsys):
    code, out, _ = run_cli(["xor", "--epochs", "300", "--hidden", "4"], capsys)
    assert code == 0
    assert "XOR: 2-4-1" in out and "accuracy" in out


def test_train_without_scikit_learn_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code, _, err = run_cli(["train", "digits", "--quick", "--no-progress"], capsys)
    assert code == 1
    assert 'pip install "fnnet[examples]"' in err and "scikit-learn" in err


def test_plot_without_matplotlib_fails_before_training(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run_cli(["train", "digits", "--quick", "--no-progress",
                              "--plot", str(tmp_path / "d.png")], capsys)
    assert code == 1 and "--plot needs matplotlib" in err
    assert "train loss" not in out and not (tmp_path / "d.png").exists()


def test_console_script_is_installed_and_errors_are_not_tracebacks():
    exe = os.path.join(os.path.dirname(sys.executable), "fnnet")
    assert os.path.exists(exe), "the fnnet console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "train", "digits", "--epochs", "-1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "usage: fnnet train digits" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_gradcheck_every_builtin_passes(capsys):
    code, out, _ = run_cli(["gradcheck"], capsys)
    assert code == 0, out
    assert "FAIL" not in out and "ERROR" not in out
    assert max(map(len, out.splitlines())) <= 100, out


def test_gradcheck_lines_fit_100_columns(monkeypatch, capsys):
    """A TransformerBlock's full name is over 200 characters: cut; a long failure
    detail wraps under the result column."""
    results = [gradcheck_all.Result("TransformerBlock(" + "serial(residual(LayerNorm()), " * 9
                                    + ")", "layer", "FAIL", 12, 1e-3, 1e-2, 0.1,
                                    ", ".join(f"[{i}]['w'] wrong" for i in range(12)))]
    table = gradcheck_all.format_table(results)
    assert max(map(len, table.splitlines())) <= 100, table
    assert "TransformerBlock(serial(residual(Laye..." in table and "[11]['w']" in table
    code, out, _ = run_cli(["gradcheck", "--only", "MLPBlock"], capsys)
    assert code == 0 and max(map(len, out.splitlines())) <= 100, out
