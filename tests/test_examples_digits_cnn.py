import importlib.util
import pathlib
import re

import pytest

pytest.importorskip("sklearn")

PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"


def load_example():
    spec = importlib.util.spec_from_file_location("digits_cnn_example", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(capsys, argv):
    code = load_example().main(argv)
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy: ([\d.]+) %", out).group(1))
    return code, out, accuracy


@pytest.mark.slow   # time budget of the default run
def test_digits_cnn_quick(capsys):
    code, out, accuracy = run(capsys, ["--quick"])
    assert code == 0, out
    assert "Conv2D(16, 3)" in out and "MaxPool2D(2)" in out
    assert "PASS: 6/6 leaves agree" in out  # the CNN's gradient check
    assert accuracy > 50  # 2 epochs already learn a lot; chance is 10 %
    assert re.search(r"wall time: [\d.]+ s", out)


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--batch-size", "-3"], ["--lr", "nan"]])
def test_digits_cnn_bad_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        load_example().main(argv)
    assert exc.value.code == 2 and "usage:" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_digits_full_run_reaches_97_percent(capsys, model):
    code, out, accuracy = run(capsys, ["--model", model])
    assert code == 0, out
    assert accuracy >= 97.0, out
