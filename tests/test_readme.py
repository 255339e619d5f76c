"""The README's tour and set-up commands stay true."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_tour_runs():
    tour = _blocks("python")[0]
    assert "fn.serial" in tour and len(tour.strip().splitlines()) <= 24
    namespace = {}
    exec(compile(tour, "README tour", "exec"), namespace)
    assert namespace["probs"].shape == (4, 1)


def test_comparison_snippet_runs():
    import jax

    import fnnet as fn

    snippet = _blocks("python")[1]
    net = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
    params = net.init(jax.random.key(0), (2,))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    ns = dict(fn=fn, net=net, loss=fn.losses.mean_squared_error, params=params, x=x,
              y=jax.random.normal(jax.random.key(2), (4, 1)),
              p=fn.Dense(4).init(jax.random.key(3), (2,)))
    exec(compile(snippet, "README comparison", "exec"), ns)
    assert ns["report"].ok


def test_exactly_two_setup_commands_matching_ci():
    bash = _blocks("bash")
    setup = [b.strip() for b in bash if b.startswith("python3 -m venv")]
    assert len(setup) == 2 and "examples/xor.py" in setup[0] and "pytest" in setup[1]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert setup[1] in ci


def test_graphs_and_state_snippet_runs():
    snippet = next(b for b in _blocks("python") if "fn.tie(" in b and "BatchNorm" in b)
    namespace = {}
    exec(compile(snippet, "README graphs", "exec"), namespace)
    assert namespace["y_hat"].shape == (32, 1)
    assert len(namespace["state"][1]) == 2


def test_writing_your_own_layer_runs(capsys):
    snippet = next(b for b in _blocks("python") if 'fn.make_layer("Swish"' in b)
    namespace = {}
    exec(compile(snippet, "README own layer", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.count("PASS") == 2 and "FAIL" not in out and "no problems found" in out
    history = namespace["history"]["loss"]
    assert history[-1] < 0.05 * history[0]
    assert "loss 3.283 -> 0.07" in out and "beta 2.3" in out, out


def test_notebooks_extra_and_how_to_open_them():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^notebooks = \[[^]]*"jupyter', pyproject, flags=re.M)   # (3.10: no tomllib)
    assert 'pip install -e ".[notebooks]"' in README and "jupyter lab notebooks/" in README
