"""Sharded checkpoints on one device: the format, integrity, atomic replacement and the
errors. Several devices and meshes: test_sharding_parallel.py; several processes:
test_distributed.py."""

import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import fnnet as fn
from fnnet import sharded_checkpoint as sc


@pytest.fixture(scope="module")
def tree():
    net = fn.serial(fn.Dense(8), fn.Relu, fn.Dense(2))
    p = net.init(jax.random.key(0), (3,))
    opt = fn.optim.adam(1e-3)
    return {"params": p, "opt_state": opt.init(p), "key": jax.random.key(7),
            "half": jnp.arange(6, dtype=ml_dtypes.bfloat16).reshape(2, 3), "step": 5}


def same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    unwrap = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    return len(la) == len(lb) and all(
        np.asarray(unwrap(jnp.asarray(x))).tobytes() == np.asarray(unwrap(jnp.asarray(y))).tobytes()
        and jnp.asarray(x).dtype == jnp.asarray(y).dtype for x, y in zip(la, lb))


def test_round_trip_is_bit_for_bit_with_and_without_like(tree, tmp_path):
    path = tmp_path / "ckpt"
    fn.sharding.save(path, tree)
    assert sorted(os.listdir(path))[0] == "description.npz"
    back = fn.sharding.load(path, like=tree)
    assert same(back, tree)
    assert type(back["opt_state"][0]) is type(tree["opt_state"][0])   # NamedTuples kept
    plain = fn.sharding.load(path)
    # without like=, fnnet.checkpoint rebuilds the NamedTuple classes named in the file
    assert same(plain, tree) and type(plain["opt_state"][0]) is type(tree["opt_state"][0])
    one = fn.sharding.load(path, like=tree, shardings=jax.sharding.SingleDeviceSharding(
        jax.devices()[0]))
    assert same(one, tree)


def test_saving_again_replaces_the_old_generation_whole(tree, tmp_path):
    path = tmp_path / "ckpt"
    fn.sharding.save(path, tree)
    first = set(os.listdir(path))
    bumped = jax.tree.map(lambda a: a + 1 if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                          else a, {"params": tree["params"]})
    fn.sharding.save(path, bumped)
    files = set(os.listdir(path))
    assert len(files) == 2 and files != first          # description + one shard file
    assert same(fn.sharding.load(path, like=bumped), bumped)


def test_a_corrupted_shard_file_never_loads(tree, tmp_path):
    path = tmp_path / "ckpt"
    fn.sharding.save(path, tree)
    shard = next(f for f in os.listdir(path) if f.startswith("shards."))
    raw = bytearray((path / shard).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (path / shard).write_bytes(bytes(raw))
    with pytest.raises(fn.checkpoint.CheckpointError, match="corrupted|SHA-256|CRC"):
        fn.sharding.load(path, like=tree)
    os.remove(path / shard)
    with pytest.raises(fn.checkpoint.CheckpointNotFoundError):
        fn.sharding.load(path, like=tree)


def test_missing_and_foreign_paths_are_clear_errors(tree, tmp_path):
    with pytest.raises(fn.checkpoint.CheckpointNotFoundError, match="not found"):
        fn.sharding.load(tmp_path / "nothing")
    fn.save(tmp_path / "single.npz", tree["params"])
    with pytest.raises(fn.checkpoint.CheckpointError, match="is a file; a sharded checkpoint "
                                                            "is the directory"):
        fn.sharding.load(tmp_path / "single.npz")
    with pytest.raises(fn.checkpoint.CheckpointError, match="has no description.npz"):
        fn.sharding.load(tmp_path)


def test_like_with_other_shapes_names_every_difference(tree, tmp_path):
    path = tmp_path / "ckpt"
    fn.sharding.save(path, tree["params"])
    other = fn.serial(fn.Dense(9), fn.Relu, fn.Dense(2)).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"\[0\]\['w'\]: float32\(3, 8\) in the checkpoint, "
                                         r"float32\(3, 9\) in `like`"):
        fn.sharding.load(path, like=other)
    with pytest.raises(ValueError, match=r"missing in the checkpoint: \[3\]"):
        fn.sharding.load(path, like=tree["params"] + ({"w": jnp.zeros(2)},))


def test_a_checkpoint_written_by_more_processes_than_load_it_is_an_error(tree, tmp_path):
    path = tmp_path / "ckpt"
    fn.sharding.save(path, tree["params"])
    desc = sc._description(str(path))
    desc["process_count"] = 4                 # as if 4 processes had written it
    fn.save(path / sc.DESCRIPTION,
            {"description": np.frombuffer(json.dumps(desc).encode(), np.uint8)})
    with pytest.raises(fn.checkpoint.CheckpointError,
                       match="was written by 4 processes and is being loaded by 1; .* load it "
                             "with at least 4 processes"):
        fn.sharding.load(path, like=tree["params"])
