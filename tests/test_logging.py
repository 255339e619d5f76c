"""Per-epoch records in the history and in a CSV / JSON-lines log written as training goes."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn

X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
Y = jnp.array([[0], [1], [1], [0]], jnp.float32)
BCE = fn.losses.sigmoid_binary_cross_entropy
NET = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))
P = NET.init(jax.random.key(0), (2,))


def mean_logit(logits, y):
    """A user metric: the mean logit."""
    return jnp.mean(logits)


# a schedule, so that the learning rate record changes from epoch to epoch
OPT = fn.optim.sgd(fn.optim.exponential_decay(0.5, transition_steps=1, decay_rate=0.5))
KW = dict(epochs=6, chunk_size=4, metrics=("loss", "accuracy", mean_logit))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    out = {}
    for suffix in ("csv", "jsonl"):
        path = d / f"run.{suffix}"
        out[suffix] = (path, fn.fit(NET, BCE, OPT, P, X, Y, log=path, **KW)[2])
    return out


def test_history_has_epoch_loss_metrics_lr_and_time(runs):
    h = runs["csv"][1]
    assert list(h) == ["epoch", "loss", "accuracy", "mean_logit", "lr", "time", "stopped"]
    np.testing.assert_array_equal(h["epoch"], np.arange(1, 7))
    np.testing.assert_allclose(h["lr"], 0.5 * 0.5 ** np.arange(1, 7), rtol=1e-6)  # after epoch e
    assert np.all(np.diff(h["time"]) >= 0) and h["time"][0] > 0
    params = fn.fit(NET, BCE, OPT, P, X, Y, **dict(KW, epochs=2))[0]     # same program
    logits = fn.predict(NET, params, X)
    assert h["mean_logit"][1] == pytest.approx(float(jnp.mean(logits)), rel=1e-6)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_log_file_holds_every_epoch(runs, suffix):
    path, h = runs[suffix]
    if suffix == "csv":
        with open(path) as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 6 and list(rows[0]) == ["epoch", "loss", "accuracy", "mean_logit", "lr",
                                                "time"]
    for name in ("epoch", "loss", "mean_logit", "lr"):
        np.testing.assert_allclose([float(r[name]) for r in rows], h[name], rtol=1e-7)


def test_resumed_run_appends_to_the_log(tmp_path):
    path = tmp_path / "run.jsonl"
    _, s, _ = fn.fit(NET, BCE, OPT, P, X, Y, log=path, **dict(KW, epochs=2))
    fn.fit(NET, BCE, OPT, P, X, Y, log=path, opt_state=s, initial_epoch=2, **KW)
    epochs = [json.loads(line)["epoch"] for line in path.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("name,err,match", [
    ("missing_dir/run.csv", FileNotFoundError, r"fit: cannot write the log file .*nothing was trained"),
    ("run.txt", ValueError, r"fit: log=.* has an unknown suffix '.txt'; use .csv or .jsonl"),
])
def test_unwritable_log_is_an_error_before_training(tmp_path, name, err, match):
    calls = []

    def fwd(params, x, *, key=None):
        calls.append(1)
        return NET.fwd(params, x, key=key)

    counted = fn.Layer(NET.init, fwd, NET.bwd)
    with pytest.raises(err, match=match):
        fn.fit(counted, BCE, OPT, P, X, Y, epochs=3, log=tmp_path / name)
    assert calls == []             # nothing was traced, let alone trained
