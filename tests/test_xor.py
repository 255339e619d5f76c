"""The XOR recipe (fnnet/demos/xor.py, run by examples/xor.py and `fnnet xor`)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fnnet.demos import xor

ROOT = Path(__file__).resolve().parents[1]


def test_default_is_the_tour_solved_seed_then_the_honest_rates(capsys):
    """`python examples/xor.py`: the recipe solving XOR first (seed 1), then the solve
    rate over 100 seeds of the recipe (about half) and of the reliable variants."""
    assert xor.main([]) == 0
    out = capsys.readouterr().out
    assert "2-3-1, relu hidden, sigmoid output, bce loss, normal weights, zero biases, SGD lr=0.1, 10,000 epochs" in out
    assert "seed 1 (one this recipe solves" in out and "accuracy 100%  (solved)" in out
    losses = [float(v) for v in re.findall(r"epoch\s+\d+\s+loss (\S+)", out)]
    assert len(losses) == 11 and losses[-1] < 0.01 < losses[0]
    assert re.search(r"10,000 epochs in [\d.]+ ms compiled", out)
    rates = {m.group(1): int(m.group(2)) for m in
             re.finditer(r"(2-\d-1 \w+)\s+\(.*?\)\s+solved\s+(\d+)/100", out)}
    assert 20 <= rates["2-3-1 relu"] <= 80              # the honest number: about half
    assert rates["2-8-1 relu"] >= 85 and rates["2-8-1 tanh"] >= 95
    assert "--seeds 100" in out


def test_a_seed_given_is_one_run(capsys):
    assert xor.main(["--seed", "0", "--epochs", "2000"]) == 0
    out = capsys.readouterr().out
    assert "accuracy 75%  (NOT solved)" in out and "try --seeds 100" in out
    assert "How often" not in out


def test_mse_variant_trains(capsys):
    assert xor.main(["--loss", "mse", "--activation", "tanh", "--hidden", "8", "--epochs", "3000", "--lr", "0.5"]) == 0
    losses = [float(v) for v in re.findall(r"loss (\S+)", capsys.readouterr().out)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("argv,msg", [(["--hidden", "0"], "--hidden must be >= 1"),
                                      (["--lr", "-1"], "--lr must be > 0"),
                                      (["--activation", "cubic"], "invalid choice")])
def test_bad_flags_are_argparse_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        xor.main(argv)
    assert exc.value.code == 2 and msg in capsys.readouterr().err


def test_example_script_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "xor.py"), "--seed", "0",
                          "--epochs", "200"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "accuracy" in out.stdout
