import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.checkpoint import CheckpointError

NET = fn.serial(fn.Dense(3), fn.Relu, fn.Dense(1))


def tree():
    params = NET.init(jax.random.key(0), (2,))
    opt = fn.optim.adam(1e-3)
    state = opt.init(params)
    state = opt.update(params, state, params)[1]          # non-zero moments, count 1
    return {"params": params, "opt_state": state, "key": jax.random.key(7), "epoch": np.int32(3)}


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert jnp.result_type(x) == jnp.result_type(y)
        np.testing.assert_array_equal(x, y)


def test_round_trip_with_like_restores_namedtuples_keys_and_dtypes(tmp_path):
    t = tree()
    path = tmp_path / "ckpt.npz"
    fn.save(path, t)
    back = fn.load(path, like=t)
    assert_same(back, t)
    assert isinstance(back["opt_state"][0], fn.optim.ScaleByAdamState)
    assert back["opt_state"][0].count.dtype == jnp.int32 and int(back["opt_state"][0].count) == 1


def test_file_is_plain_npz_keyed_by_pytree_paths(tmp_path):
    path = tmp_path / "ckpt.npz"
    fn.save(path, tree())
    with np.load(path, allow_pickle=False) as data:
        files = set(data.files)
        np.testing.assert_array_equal(data["['params'][0]['w']"], tree()["params"][0]["w"])
    assert "['opt_state'][0].count" in files and "['opt_state'][0].mu[2]['b']" in files
    assert "__fnnet_tree__" in files


def test_load_without_like_rebuilds_dicts_and_tuples(tmp_path):
    t = {"a": (jnp.ones(2), [jnp.zeros(1), None]), "b": {"c": jnp.int32(4)}}
    fn.save(tmp_path / "x.npz", t)
    back = fn.load(tmp_path / "x.npz")
    assert_same(back, t)
    state = fn.optim.sgd(0.1, momentum=0.9).init({"w": jnp.ones(2)})
    fn.save(tmp_path / "s.npz", state)
    back = fn.load(tmp_path / "s.npz")           # NamedTuples come back as dicts of fields
    assert set(back[0]) == {"trace"} and set(back[1]) == {"count"}


def test_mismatch_with_like_names_every_difference(tmp_path):
    params = NET.init(jax.random.key(0), (2,))
    fn.save(tmp_path / "p.npz", params)
    other = fn.serial(fn.Dense(4), fn.Relu, fn.Dense(1)).init(jax.random.key(0), (2,))
    with pytest.raises(ValueError) as err:
        fn.load(tmp_path / "p.npz", like=other)
    msg = str(err.value)
    assert "[0]['w']: shape (2, 3) in the file, (2, 4) in `like`" in msg
    assert "[2]['w']: shape (3, 1) in the file, (4, 1) in `like`" in msg
    half = jax.tree.map(lambda a: a.astype(jnp.float16), params)
    with pytest.raises(ValueError, match=r"\[0\]\['b'\]: dtype float32 in the file, float16 in `like`"):
        fn.load(tmp_path / "p.npz", like=half)
    with pytest.raises(ValueError, match=r"missing in the file: \[3\]\['w'\]"):
        fn.load(tmp_path / "p.npz", like=params + ({"w": jnp.ones(1)},))
    with pytest.raises(ValueError, match=r"<root>: container is tuple in the file, list in `like`"):
        fn.load(tmp_path / "p.npz", like=list(params))


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    path = tmp_path / "ckpt.npz"
    fn.save(path, tree())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        fn.load(path)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        fn.load(path, like=tree())


def test_corrupted_array_bytes_fail_the_crc(tmp_path):
    path = tmp_path / "ckpt.npz"
    t = {"w": jnp.arange(1000, dtype=jnp.float32)}
    fn.save(path, t)
    data = bytearray(path.read_bytes())
    i = data.index(np.float32(500).tobytes())           # inside the array's payload
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        fn.load(path, like=t)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    fn.save(path, {"w": jnp.ones(3)})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        fn.save(path, {"w": jnp.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(fn.load(path)["w"], np.ones(3))   # old file intact
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_unsupported_nodes_are_rejected(tmp_path):
    class Box:
        pass

    with pytest.raises(TypeError, match=r"save: unsupported node Box at \['x'\]"):
        fn.save("/nonexistent/never-written.npz", {"x": Box()})
    fn.save(tmp_path / "c.npz", {"x": jnp.ones(2)})
    with pytest.raises(TypeError, match=r"load \(like\): unsupported node Box at \['x'\]"):
        fn.load(tmp_path / "c.npz", like={"x": Box()})


def test_saved_file_has_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        fn.save(tmp_path / "c.npz", {"w": jnp.ones(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o644   # as np.savez would leave it


def test_not_an_fnnet_file(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(CheckpointError, match="not an fnnet checkpoint"):
        fn.load(tmp_path / "plain.npz")


def test_resume_training_from_a_checkpoint_continues_exactly(tmp_path):
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.array([[0], [1], [1], [0]], jnp.float32)
    loss, opt = fn.losses.sigmoid_binary_cross_entropy, fn.optim.adam(0.01)
    p0 = NET.init(jax.random.key(0), (2,))
    p_full, _, _ = fn.fit(NET, loss, opt, p0, x, y, epochs=40)
    p, s, _ = fn.fit(NET, loss, opt, p0, x, y, epochs=20)
    fn.save(tmp_path / "c.npz", {"params": p, "opt_state": s})
    back = fn.load(tmp_path / "c.npz", like={"params": p, "opt_state": s})
    p2, _, _ = fn.fit(NET, loss, opt, back["params"], x, y, epochs=20, opt_state=back["opt_state"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p2, p_full)
