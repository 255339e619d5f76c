"""fnnet = transformers, in float64: a tiny random GPT-2 (tied head) and two tiny Llamas
(untied with grouped-query heads and biases; tied with one key/value head and a head_dim
other than d / heads). For each: transformers saves, fnnet loads; the logits, the
next-token loss and EVERY parameter's gradient from fnnet's manual backward equal
torch autograd's within 1e-10 (normwise); fnnet saves, transformers loads and gives
fnnet's logits. Skipped without torch and transformers.

transformers' Llama computes RMSNorm, the rotary angles and the attention softmax in
float32 even in a float64 model; here the three are patched to run in the model's dtype
(``float64_llama``), else the two agree to ~1e-7 only
(test_unpatched_llama_agrees_to_float32_rounding)."""

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet as fn
from fnnet.models import hf as fnnet_hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")
from transformers.models.llama import modeling_llama  # noqa: E402

V, T, B = 64, 8, 2
CE = fn.losses.softmax_cross_entropy


def _rms_norm_in_model_dtype(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rope_in_float64(self, x, position_ids):
    params = getattr(self.config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(self.config, "rope_theta", None))
    dim = 2 * self.inv_freq.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _eager_attention_softmax_in_model_dtype(module, query, key, value, attention_mask, scaling,
                                            dropout=0.0, **kwargs):
    key = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.nn.functional.softmax(weights, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


@contextlib.contextmanager
def float64_llama(name="llama"):
    """transformers' Llama with RMSNorm, the rotary angles and the attention softmax in the
    model's dtype (see the module docstring); nothing for GPT-2 (already float64 through)."""
    with pytest.MonkeyPatch.context() as mp:
        if name != "gpt2":
            mp.setattr(modeling_llama.LlamaRMSNorm, "forward", _rms_norm_in_model_dtype)
            mp.setattr(modeling_llama.LlamaRotaryEmbedding, "forward", _rope_in_float64)
            mp.setattr(modeling_llama, "eager_attention_forward",
                       _eager_attention_softmax_in_model_dtype)
        yield


CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=V, n_positions=16, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=1),
    "llama-gqa-bias": lambda: transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=500.0, attention_bias=True,
        mlp_bias=True, tie_word_embeddings=False, rms_norm_eps=1e-5),
    "llama-mqa-tied": lambda: transformers.LlamaConfig(
        vocab_size=V, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True),
}


def _hf_model(name, seed):
    torch.manual_seed(seed)
    cls = transformers.GPT2LMHeadModel if name == "gpt2" else transformers.LlamaForCausalLM
    config = CONFIGS[name]()
    config._attn_implementation = "eager"
    model = cls(config).to(torch.float64).eval()
    with torch.no_grad():          # norms away from 1 and 0, biases away from 0
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    """transformers' model saved, loaded by fnnet in float64; both sides' logits, loss and
    gradients on the same ids; fnnet's save loaded back by transformers."""
    with float64_llama(request.param), jax.enable_x64(True):
        out = _compare(request.param, tmp_path_factory)
    with torch.no_grad():     # transformers as it is (float32 RMSNorm, angles and softmax)
        out["logits_unpatched"] = out["hf_model"](torch.tensor(out["x"])).logits.numpy()
    return out


def _compare(name, tmp_path_factory):
    hf_model = _hf_model(name, seed=0)
    hf_dir = tmp_path_factory.mktemp(name + "-hf")
    hf_model.save_pretrained(hf_dir)
    model, params = fn.models.from_pretrained(hf_dir, dtype=jnp.float64)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (B, T + 1))
    x, labels = ids[:, :-1], ids[:, 1:]

    logits_t = hf_model(torch.tensor(x)).logits
    loss_t = torch.nn.functional.cross_entropy(logits_t.reshape(-1, V),
                                               torch.tensor(labels).reshape(-1))
    loss_t.backward()
    grads_t = {n: p.grad.numpy() for n, p in hf_model.named_parameters()}

    @jax.jit
    def fnnet_side(p, x, y):
        value, grads = fn.value_and_grad(model, CE)(p, x, y)
        return fn.apply(model, p, x), value, grads

    logits, loss, grads = fnnet_side(params, jnp.asarray(x), jnp.asarray(labels))
    out_dir = tmp_path_factory.mktemp(name + "-fnnet")
    fn.models.save_pretrained(out_dir, model, params)
    reloaded = type(hf_model).from_pretrained(out_dir, attn_implementation="eager",
                                              dtype=torch.float64)
    with torch.no_grad():
        logits_back = reloaded(torch.tensor(x)).logits.numpy()
    return dict(name=name, model=model, params=params, hf_model=hf_model, x=x,
                logits=np.asarray(logits), loss=float(loss),
                grads=fnnet_hf.state_dict(model, grads), logits_t=logits_t.detach().numpy(),
                loss_t=float(loss_t.detach()), grads_t=grads_t, logits_back=logits_back)


def normwise(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_logits_and_loss_equal_transformers(pair):
    assert pair["logits"].dtype == np.float64
    assert normwise(pair["logits"], pair["logits_t"]) < 1e-10
    assert abs(pair["loss"] - pair["loss_t"]) <= 1e-10 * abs(pair["loss_t"])


def test_every_gradient_equals_torch_autograd(pair):
    grads, grads_t = pair["grads"], pair["grads_t"]
    assert set(grads) == set(grads_t)          # the same parameters under the same names
    for name, g in grads_t.items():
        assert grads[name].shape == g.shape, name
        assert np.max(np.abs(g)) > 1e-8, name    # every leaf carries signal
        assert normwise(grads[name], g) < 1e-10, name


def test_fnnet_saved_weights_give_fnnet_logits_in_transformers(pair):
    assert normwise(pair["logits_back"], pair["logits"]) < 1e-10


def test_padding_mask_equals_transformers_attention_mask(pair):
    if pair["name"] == "llama-mqa-tied":
        pytest.skip("one Llama and the GPT-2 suffice")
    mask = np.ones((B, T), bool)
    mask[1, :3] = False                                   # left padding
    with torch.no_grad(), float64_llama(pair["name"]):
        ref = pair["hf_model"](torch.tensor(pair["x"]),
                               attention_mask=torch.tensor(mask.astype(np.int64))).logits.numpy()
    with jax.enable_x64(True):
        got = np.asarray(fn.apply(pair["model"], pair["params"],
                                  (jnp.asarray(pair["x"]), jnp.asarray(mask))))
    # real positions only: transformers spreads a padding query's attention over the masked
    # keys, fnnet gives it zero; neither reaches a real position
    assert normwise(got[mask], ref[mask]) < 1e-10


def test_gelu_new_is_fnnet_tanh_gelu():
    from transformers.activations import NewGELUActivation
    x = np.linspace(-8, 8, 1001)
    with jax.enable_x64(True):
        ours = np.asarray(fn.apply(fn.Gelu(approximate=True), (), jnp.asarray(x)[None]))[0]
    ref = NewGELUActivation()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-14)     # float64 rounding
    assert math.isclose(float(ours[-1]), 8.0)


def test_unpatched_llama_agrees_to_float32_rounding(pair):
    err = normwise(pair["logits"], pair["logits_unpatched"])
    assert err < 1e-14 if pair["name"] == "gpt2" else 1e-12 < err < 1e-5
