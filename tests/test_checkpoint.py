import os

import hypothesis
import hypothesis.strategies as st
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
    back = fn.load(tmp_path / "s.npz")           # NamedTuples rebuilt from their classes
    assert_same(back, state)
    assert isinstance(back[0], fn.optim.TraceState)


def test_load_without_like_gives_an_optimizer_state_that_trains_on(tmp_path):
    opt = fn.optim.adamw(1e-2)
    t = tree()
    params = t["params"]
    state = opt.init(params)
    fn.save(tmp_path / "c.npz", {"params": params, "opt_state": state,
                                 "mp": fn.MixedPrecisionParams(params, jnp.float32(8.0))})
    back = fn.load(tmp_path / "c.npz")
    assert jax.tree.structure(back["opt_state"]) == jax.tree.structure(state)
    assert isinstance(back["mp"], fn.MixedPrecisionParams)
    updates, _ = opt.update(params, back["opt_state"], back["params"])   # usable as is
    assert jax.tree.structure(updates) == jax.tree.structure(params)


Local = __import__("collections").namedtuple("Local", "a b")


def test_load_without_like_warns_when_a_namedtuple_class_is_not_imported(tmp_path):
    import sys

    fn.save(tmp_path / "l.npz", {"s": Local(jnp.ones(1), jnp.zeros(2))})
    assert isinstance(fn.load(tmp_path / "l.npz")["s"], Local)   # this module is imported
    saved = sys.modules.pop(__name__)
    try:
        with pytest.warns(UserWarning, match=r"came back as dicts of their fields.*"
                                             r"\['s'\]: .*Local.*pass like="):
            back = fn.load(tmp_path / "l.npz")
    finally:
        sys.modules[__name__] = saved
    assert set(back["s"]) == {"a", "b"}


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

    monkeypatch.setattr(np.lib.format, "write_array", boom)
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


# --- dtypes NumPy lacks ---------------------------------------------------------

def bits(a):
    return np.asarray(a).view(f"u{np.asarray(a).dtype.itemsize}")


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "int4", "float16"])
def test_ml_dtypes_round_trip_bit_exactly(tmp_path, dtype):
    raw = np.arange(-8, 8, dtype=np.int8) if dtype == "int4" else \
        np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-3], np.float32)
    a = jnp.asarray(raw).astype(dtype)
    if dtype.startswith(("bfloat", "float16")):
        a = a.reshape(2, 4)
    t = {"a": a, "scalar": a.reshape(-1)[2]}
    fn.save(tmp_path / "c.npz", t)
    for back in (fn.load(tmp_path / "c.npz"), fn.load(tmp_path / "c.npz", like=t)):
        assert back["a"].dtype == jnp.dtype(dtype) and back["a"].shape == a.shape
        np.testing.assert_array_equal(bits(back["a"]), bits(a))      # NaN payloads and -0 too
        np.testing.assert_array_equal(bits(back["scalar"]), bits(t["scalar"]))
    with pytest.raises(ValueError, match=rf"\['a'\]: dtype {dtype} in the file, float32 in `like`"):
        fn.load(tmp_path / "c.npz", like={"a": a.astype(jnp.float32), "scalar": t["scalar"]})


def test_big_endian_and_non_contiguous_leaves_round_trip(tmp_path):
    t = {"be": np.arange(6, dtype=">f8").reshape(2, 3), "t": np.arange(6.0).reshape(2, 3).T}
    fn.save(tmp_path / "c.npz", t)
    with np.load(tmp_path / "c.npz") as data:      # little-endian on disk, readable by NumPy
        assert data["['be']"].dtype == np.dtype("<f8")
    with jax.enable_x64(True):
        back = fn.load(tmp_path / "c.npz")
        np.testing.assert_array_equal(back["be"], t["be"])
        np.testing.assert_array_equal(back["t"], t["t"])


def test_non_numeric_leaves_are_rejected_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"save: unsupported dtype <U1 at \['s'\]"):
        fn.save(tmp_path / "c.npz", {"s": np.array(["a"])})
    assert os.listdir(tmp_path) == []


# --- integrity: every corruption is a CheckpointError ------------------------------

def rich_tree():
    """Every kind of leaf and container; one array over 4 KiB (its header is read early)."""
    return {"w": jnp.arange(1500, dtype=jnp.float32), "b": jnp.array([1.5, -0.0, jnp.nan], jnp.bfloat16),
            "key": jax.random.key(3), "none": None, "small": (np.int8(3), [jnp.zeros((2, 0))]),
            "opt": fn.optim.sgd(0.1, momentum=0.9).init({"w": jnp.ones(2)})}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "c.npz"
    t = rich_tree()
    fn.save(path, t)
    return path.read_bytes(), t


def load_bytes(tmp_path, data, like=None, name="x.npz"):
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return fn.load(path, like=like)




def assert_loads_identical_or_fails_cleanly(tmp_path, data, t):
    """The integrity contract: a CheckpointError, or exactly ``t`` (never anything else)."""
    for like in (None, t):
        try:
            back = load_bytes(tmp_path, data, like)
        except CheckpointError:
            continue
        assert jax.tree.structure(back) == jax.tree.structure(t)
        for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(t)):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x, y = jax.random.key_data(x), jax.random.key_data(y)
            assert jnp.result_type(x) == jnp.result_type(y) and x.shape == y.shape
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes()   # bit-identical (NaNs too)


def test_header_flip_in_a_large_array_is_caught(tmp_path, saved):
    """A flipped byte in the .npy header of an array over 4 KiB (shape, dtype) used to load
    silently (NumPy stops reading before the zip CRC); now the CRC and the digests catch it."""
    data, t = saved
    start = data.index(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1500,)")
    for offset in range(0, 60, 3):
        corrupt = bytearray(data)
        corrupt[start + offset] ^= 0x04
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            load_bytes(tmp_path, corrupt)


def test_every_prefix_length_is_an_error(tmp_path, saved):
    data, t = saved
    for n in list(range(0, len(data), 97)) + [len(data) - 1]:
        with pytest.raises(CheckpointError):
            load_bytes(tmp_path, data[:n])




@st.composite
def corruptions(draw, size):
    """Bit flips, overwritten bytes, truncation, inserted or deleted bytes at random places."""
    kind = draw(st.sampled_from(["flip", "flip", "overwrite", "truncate", "insert", "delete"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)),
                                   min_size=1, max_size=4))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    at = draw(st.integers(0, size - 1))
    return kind, (at, draw(st.binary(min_size=1, max_size=16)))


def corrupt(data, how):
    kind, arg = how
    data = bytearray(data)
    if kind == "flip":
        for i, bit in arg:
            data[i] ^= 1 << bit
    elif kind == "truncate":
        del data[arg:]
    elif kind == "overwrite":
        at, junk = arg
        data[at:at + len(junk)] = junk
    elif kind == "insert":
        at, junk = arg
        data[at:at] = junk
    else:
        at, junk = arg
        del data[at:at + len(junk)]
    return data


def _corruption_property(saved, tmp_path_factory):
    data, t = saved
    tmp = tmp_path_factory.mktemp("corrupt")

    @hypothesis.given(how=corruptions(len(data)))
    def prop(how):
        assert_loads_identical_or_fails_cleanly(tmp, corrupt(data, how), t)

    return prop


def test_random_corruptions_are_errors_or_load_identical_data(saved, tmp_path_factory):
    hypothesis.settings(max_examples=120, deadline=None, derandomize=True, database=None)(
        _corruption_property(saved, tmp_path_factory))()


@pytest.mark.slow
def test_random_corruptions_many(saved, tmp_path_factory):
    hypothesis.settings(max_examples=5000, deadline=None, database=None)(
        _corruption_property(saved, tmp_path_factory))()


@pytest.mark.slow
def test_every_single_bit_flip_is_an_error_or_harmless(tmp_path, saved):
    data, t = saved
    for i in range(len(data)):
        for bit in (0, 7):
            assert_loads_identical_or_fails_cleanly(tmp_path, corrupt(data, ("flip", [(i, bit)])), t)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(3))
    np.savez(tmp_path / "hand.npz", w=np.ones(2), b=np.zeros(1))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("weights: 1 2 3\n")
    (tmp_path / "dir.npz").mkdir()
    cases = {"a.npy": r"is a \.npy file.*not an fnnet checkpoint.*np\.load",
             "hand.npz": r"not an fnnet checkpoint \(no '__fnnet_tree__' entry; it holds 'b', 'w'",
             "empty.npz": r"is empty",
             "text.npz": r"is not an \.npz \(zip\) file",
             "dir.npz": r"is a directory, not a checkpoint",
             "missing.npz": r"no checkpoint at .*missing\.npz \(file not found\)"}
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            fn.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):           # a missing file is both
        fn.load(tmp_path / "missing.npz")


def test_format_1_files_still_load(tmp_path):
    """Checkpoints written before digests existed (no ml_dtypes, CRCs only) stay readable."""
    import json
    meta = {"format": "fnnet-checkpoint-1", "tree": {"t": "dict", "keys": [["str", "w"]],
                                                     "c": [{"t": "leaf"}]}}
    arrays = {"['w']": np.arange(3.0, dtype=np.float32),
              "__fnnet_tree__": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    np.savez(tmp_path / "old.npz", **arrays)
    np.testing.assert_array_equal(fn.load(tmp_path / "old.npz")["w"], [0.0, 1.0, 2.0])
    arrays["['w']"] = np.arange(6.0, dtype=">f4").reshape(2, 3).T   # big-endian, Fortran order
    np.savez(tmp_path / "old.npz", **arrays)
    np.testing.assert_array_equal(fn.load(tmp_path / "old.npz")["w"], arrays["['w']"])
    arrays["['w']"] = np.zeros(2, "V2")               # a bfloat16 that format 1 could not name
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"raw dtype \|V2.*re-save"):
        fn.load(tmp_path / "old.npz")


def test_save_verifies_what_it_wrote(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    fn.save(path, {"w": jnp.ones(3)})
    real = np.lib.format.write_array

    def flaky_disk(f, array, **kw):                 # the bytes that land differ from the array
        real(f, array + 1 if array.dtype == np.float32 else array, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", flaky_disk)
    with pytest.raises(CheckpointError, match="did not read back intact.*do not match their SHA-256"):
        fn.save(path, {"w": jnp.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(fn.load(path)["w"], np.ones(3))   # the old file is intact
    assert os.listdir(tmp_path) == ["c.npz"]


# --- orphaned temporary files and kill -9 ------------------------------------------

def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
    import subprocess
    import sys

    from fnnet.checkpoint import TMP_MARK, _host
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = f"c.npz{TMP_MARK}{dead}.{_host()}.0123456789abcdef"
    alive = f"c.npz{TMP_MARK}{os.getppid()}.{_host()}.0123456789abcdef"   # a running process
    other_host = f"c.npz{TMP_MARK}{dead}.elsewhere.0123456789abcdef"       # can't probe its pid
    for name in (stale, alive, other_host, "c.npz.notes.tmp"):
        (tmp_path / name).write_bytes(b"half a checkpoint")
    fn.save(tmp_path / "c.npz", {"w": jnp.ones(2)})
    assert sorted(os.listdir(tmp_path)) == sorted(["c.npz", alive, other_host, "c.npz.notes.tmp"])


KILL_DRIVER = r"""
import importlib.util, json, os, random, signal, sys, time
import numpy as np
# The checkpoint module alone: no JAX backend starts, so forking is safe.
spec = importlib.util.spec_from_file_location("ck", sys.argv[1])
ck = importlib.util.module_from_spec(spec); spec.loader.exec_module(ck)
path, rounds, rng = sys.argv[2], int(sys.argv[3]), random.Random(int(sys.argv[4]))
directory = os.path.dirname(path)

def tree(i):
    return {"i": np.int64(i), "w": np.full(1 << 17, i, np.float32), "h": np.full(5, i, np.int16)}

def temps():
    return [n for n in os.listdir(directory) if ck.TMP_MARK in n]

ck.save(path, tree(0))
version, orphans, versions = 0, 0, []
for _ in range(rounds):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                       # the saver: save versions until killed
        os.close(r)
        i = version
        while True:
            i += 1
            ck.save(path, tree(i))
            os.write(w, b".")
    os.close(w)
    time.sleep(rng.uniform(0, 0.06))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    done = 0
    while chunk := os.read(r, 1 << 16):
        done += len(chunk)
    os.close(r)
    orphans += bool(temps())
    arrays, _ = ck._read_all(path)     # verified whole, or CheckpointError
    i = int(arrays["['i']"])
    assert version + done <= i <= version + done + 1, (version, done, i)
    assert (arrays["['w']"] == i).all() and (arrays["['h']"] == i).all()
    version = i
    versions.append(i)
ck.save(path, tree(version + 1))
print(json.dumps({"versions": versions, "orphans": orphans, "left": temps()}))
"""


def run_kill_loop(tmp_path, rounds, seed):
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", KILL_DRIVER, fn.checkpoint.__file__,
                          str(tmp_path / "c.npz"), str(rounds), str(seed)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["left"] == []          # every orphan removed by a later save
    assert report["versions"] == sorted(report["versions"])
    back = fn.load(tmp_path / "c.npz")
    assert int(back["i"]) == report["versions"][-1] + 1
    return report


def test_kill_9_during_saves_leaves_old_or_new_checkpoint(tmp_path):
    run_kill_loop(tmp_path, rounds=12, seed=0)


@pytest.mark.slow
def test_kill_9_loop_many(tmp_path):
    report = run_kill_loop(tmp_path, rounds=300, seed=1)
    assert report["orphans"] > 0           # some kills did land in the middle of a save
