"""examples/llama_finetune.py in --quick mode: Hugging Face checkpoint out and in, AdamW
fine-tuning, per-example gradient norms of a batch, a sample from fn.models.generate."""

import re
import runpy
from pathlib import Path

import jax
import numpy as np
import pytest

import fnnet as fn

pytest.importorskip("safetensors")

ROOT = Path(__file__).resolve().parents[1]


def test_llama_finetune_quick(tmp_path, capsys):
    from fnnet.demos import llama_finetune

    namespace = runpy.run_path(str(ROOT / "examples" / "llama_finetune.py"), run_name="not_main")
    assert namespace["main"] is llama_finetune.main
    out_dir = tmp_path / "tuned"
    args = llama_finetune.build_parser().parse_args(["--quick", "--out", str(out_dir)])
    result = llama_finetune.run(args)
    llama_finetune.report(result)
    out = capsys.readouterr().out
    assert "config.json" in out and "model.safetensors" in out
    assert "same parameter tree: True, largest difference 0" in out
    final = re.search(r"final \((\d+) steps.*validation (\S+) nats = (\S+) bits/char", out)
    assert int(final.group(1)) == llama_finetune.QUICK["steps"]
    assert float(final.group(3)) < 6.0       # uniform over the 103 characters: 6.69 bits/char
    norms = result["norms"]
    assert norms.shape == (llama_finetune.QUICK["batch_size"],)
    assert np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert f"per-example gradient norms of one batch of {len(norms)} windows" in out
    assert "sample (temperature 0.8):\nThe " in out
    assert len(result["sample"]) == len("The ") + llama_finetune.QUICK["sample_len"]
    # the fine-tuned checkpoint written with --out loads back to the trained params, exactly
    model, params = fn.models.from_pretrained(out_dir)
    assert fn.models.config_of(model) == fn.models.config_of(result["model"])
    assert jax.tree.structure(params) == jax.tree.structure(result["params"])
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(result["params"])):
        np.testing.assert_array_equal(a, b)
