"""Sharding policies as PartitionSpecs, computed without devices (``AbstractMesh``): which
leaf is split along which axis, and the errors for axes that do not exist and splits that
are not even. Training on real (forced) devices: test_sharding_parallel.py."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

import fnnet as fn

MESH8 = AbstractMesh((8,), ("data",))
MESH42 = AbstractMesh((4, 2), ("data", "model"))


@pytest.fixture(scope="module")
def gpt_params():
    net = fn.models.gpt(64, 16, d_model=32, num_heads=4, num_layers=1)
    return jax.eval_shape(lambda: net.init(jax.random.key(0), (16,)))


def flat(specs, root="params"):
    leaves = jax.tree_util.tree_flatten_with_path(
        specs, is_leaf=lambda s: isinstance(s, P))[0]
    return {jax.tree_util.keystr(p): s for p, s in leaves}


def test_fsdp_splits_large_leaves_along_their_largest_dividing_axis(gpt_params):
    s = flat(fn.sharding.specs(MESH8, gpt_params, "fsdp"))
    assert s["[0]['table']"] == P("data")                 # (64, 32): 64 is the largest
    assert s["[2][0][1]['w_qkv']"] == P(None, "data")     # (32, 96)
    assert s["[2][1][1][2]['w']"] == P("data")            # (128, 32)
    assert s["[2][0][1]['b_qkv']"] == P()                 # 96 elements < min_size: replicated
    assert s["[1]['table']"] == P()                       # (16, 32) = 512 < 1024
    small = flat(fn.sharding.specs(MESH8, gpt_params, fn.sharding.FSDP(min_size=32)))
    assert small["[2][0][1]['b_qkv']"] == P("data") and small["[1]['table']"] == P(None, "data")


def test_fsdp_keeps_a_leaf_without_a_dividing_axis_replicated():
    tree = {"odd": jax.ShapeDtypeStruct((7, 9, 33), jnp.float32),
            "even": jax.ShapeDtypeStruct((7, 16, 33), jnp.float32)}
    s = fn.sharding.specs(MESH8, tree, fn.sharding.FSDP(min_size=1))
    assert s == {"odd": P(), "even": P(None, "data")}
    two = fn.sharding.specs(MESH42, tree, fn.sharding.FSDP(min_size=1))   # every device: 8
    assert two["even"] == P(None, ("data", "model"))
    only = fn.sharding.specs(MESH42, tree, fn.sharding.FSDP(axis="model", min_size=1))
    assert only["even"] == P(None, "model")               # 16 is even; 2 devices along "model"


def test_tensor_parallel_splits_attention_and_mlp_column_then_row(gpt_params):
    s = flat(fn.sharding.specs(MESH42, gpt_params, "tensor"))
    attn, mlp = "[2][0][1]", "[2][1][1]"
    assert s[attn + "['w_qkv']"] == P(None, "model") and s[attn + "['b_qkv']"] == P("model")
    assert s[attn + "['w_o']"] == P("model") and s[attn + "['b_o']"] == P()
    assert s[mlp + "[0]['w']"] == P(None, "model") and s[mlp + "[0]['b']"] == P("model")
    assert s[mlp + "[2]['w']"] == P("model") and s[mlp + "[2]['b']"] == P()
    assert s["[0]['table']"] == P() and s["[2][0][0]['scale']"] == P()
    # the optimizer state's moments mirror the params: same splits; counts replicated
    opt = jax.eval_shape(fn.optim.adam(1e-3).init, gpt_params)
    o = flat(fn.sharding.specs(MESH42, opt, "tensor"))
    assert o["[0].mu" + attn + "['w_qkv']"] == P(None, "model")
    assert o["[0].nu" + mlp + "[2]['w']"] == P("model") and o["[0].count"] == P()
    assert fn.sharding.TensorParallel().batch_axes(MESH42) == ("data",)


def test_tensor_parallel_pairs_dense_layers_and_splits_separate_projections_and_swiglu():
    net = fn.serial(fn.Dense(8), fn.Relu, fn.Dense(6), fn.Tanh, fn.Dense(4))
    s = fn.sharding.specs(MESH42, jax.eval_shape(lambda: net.init(jax.random.key(0), (3,))),
                          "tensor")
    assert [s[i]["w"] for i in (0, 2, 4)] == [P(None, "model"), P("model"), P()]
    gqa = {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in {
        "w_q": (16, 16), "w_k": (16, 8), "w_v": (16, 8), "w_o": (16, 16), "b_q": (16,),
        "b_o": (16,)}.items()}
    g = fn.sharding.specs(MESH42, gqa, "tensor")
    assert g["w_k"] == g["w_v"] == g["w_q"] == P(None, "model") and g["b_q"] == P("model")
    assert g["w_o"] == P("model") and g["b_o"] == P()
    swiglu = {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in {
        "w_gate": (16, 64), "w_up": (16, 64), "w_down": (64, 16), "b_down": (16,)}.items()}
    w = fn.sharding.specs(MESH42, swiglu, "tensor")
    assert w["w_gate"] == w["w_up"] == P(None, "model") and w["w_down"] == P("model")
    assert w["b_down"] == P()


def test_tensor_parallel_with_fsdp_splits_over_both_axes(gpt_params):
    s = flat(fn.sharding.specs(MESH42, gpt_params, fn.sharding.TensorParallel(fsdp=True)))
    assert s["[2][0][1]['w_qkv']"] == P("data", "model")
    assert s["[2][1][1][2]['w']"] == P("model", "data")
    assert s["[0]['table']"] == P("data")
    table = fn.sharding.describe(MESH42, gpt_params, fn.sharding.TensorParallel(fsdp=True))
    assert "P('data', 'model')" in table and table.splitlines()[-1].startswith("total")


def test_a_mesh_axis_that_does_not_exist_is_a_clear_error(gpt_params):
    with pytest.raises(ValueError, match=r"TensorParallel: the mesh has no axis 'model' "
                                         r"\(its axes are \('data',\)\); pass model_axis="):
        fn.sharding.specs(MESH8, gpt_params, "tensor")
    mesh = AbstractMesh((4, 2), ("batch", "model"))
    with pytest.raises(ValueError, match="no axis 'data'.*pass data_axis="):
        fn.sharding.specs(mesh, gpt_params, "tensor")
    assert fn.sharding.specs(mesh, gpt_params, fn.sharding.TensorParallel(data_axis="batch"))
    with pytest.raises(ValueError, match="FSDP: the mesh has no axis 'fsdp'"):
        fn.sharding.specs(MESH8, gpt_params, fn.sharding.FSDP(axis="fsdp"))
    with pytest.raises(ValueError, match="Rules: the mesh has no axis 'model'"):
        fn.sharding.specs(MESH8, gpt_params, fn.sharding.Rules([("w_o", P("model"))]))


def test_an_uneven_split_names_the_leaf_and_the_sizes_that_would_work(gpt_params):
    mesh = AbstractMesh((1, 5), ("data", "model"))
    with pytest.raises(ValueError) as err:
        fn.sharding.specs(mesh, gpt_params, "tensor")
    msg = str(err.value)
    assert "TensorParallel: params[2][0][1]['b_qkv'] of shape (96,) cannot be split " \
           "evenly: its axis 0 (96) over mesh axis 'model' (5 devices)" in msg, msg
    assert "Sizes of 'model' that would work: 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96" in msg
    assert "a multiple of 5 (e.g. 100" in msg
    rules = fn.sharding.Rules([(r"\[0\]\['table'\]", P(None, "data"))])
    with pytest.raises(ValueError, match=r"Rules: params\[0\]\['table'\] of shape \(64, 32\) "
                                         r"cannot be split evenly: its axis 1 \(32\)"):
        fn.sharding.specs(AbstractMesh((3,), ("data",)), gpt_params, rules)


def test_rules_place_leaves_by_path_first_match_wins(gpt_params):
    rules = fn.sharding.Rules([(r"w_qkv", P(None, "model")), (r"\['w", P("data")),
                               (r"table", P(None, "model"))], batch="data")
    s = flat(fn.sharding.specs(MESH42, gpt_params, rules))
    assert s["[2][0][1]['w_qkv']"] == P(None, "model") and s["[2][0][1]['w_o']"] == P("data")
    assert s["[0]['table']"] == P(None, "model") and s["[2][0][1]['b_o']"] == P()
    assert rules.batch_axes(MESH42) == ("data",)
    with pytest.raises(TypeError, match="Rules: each rule is"):
        fn.sharding.Rules([("w", "data")])


def test_sharding_needs_a_mesh_and_a_known_policy():
    net = fn.serial(fn.Dense(1))
    args = (net, fn.losses.mean_squared_error, fn.optim.sgd(0.1))
    with pytest.raises(ValueError, match=r"train_step: sharding='fsdp' needs mesh="):
        fn.train_step(*args, sharding="fsdp")
    with pytest.raises(ValueError, match=r"fit: sharding='fsdp' needs mesh="):
        fn.fit(*args, net.init(jax.random.key(0), (2,)), jnp.zeros((4, 2)), jnp.zeros((4, 1)),
               epochs=1, sharding="fsdp")
    mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
    with pytest.raises(ValueError, match=r"train_step: sharding must be one of \('replicated', "
                                         r"'fsdp', 'tensor'\) or a policy object"):
        fn.train_step(*args, mesh=mesh, sharding="zero3")
    with pytest.raises(ValueError, match="FSDP: the mesh has no axis 'model'"):
        fn.train_step(*args, mesh=mesh, sharding=fn.sharding.FSDP(axis="model"))
    with pytest.raises(ValueError, match="FSDP: min_size must be a positive int"):
        fn.sharding.FSDP(min_size=0)
