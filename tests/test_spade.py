"""SPADE: the S4 branch against the direct formulas, reach beyond the local radius, padding, save/load,
half precision, gradient checkpointing. (Cached vs uncached greedy decoding: tests/test_models.py runs
it for every family.)"""

import pytest
import torch
import torch.nn.functional as F

from models import build, load
from models.compat import set_activation_checkpointing
from models.spade import PRESETS, SpadeConfig, SpadeForConditionalGeneration
from models.ssm.fftconv import bidirectional_conv_ref
from models.ssm.s4 import s4_kernel_ref, s4_parameters

torch.set_num_threads(1)
F64 = torch.float64
VOCAB = 64


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def tiny_model(seed=0, **overrides):
    config = SpadeConfig(**{**PRESETS["tiny"], "vocab_size": VOCAB, "dropout_rate": 0.0, "local_radius": 4,
                            **overrides})
    torch.manual_seed(seed)
    return SpadeForConditionalGeneration(config).double().eval()


def random_ids(batch, length, seed=1):
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def encode(model, ids, mask=None):
    return model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("L", [1, 7, 131])
def test_s4_branch_matches_direct_formula(L):
    """SpadeS4 == GLU(W GELU(K_bi * x + D x) + b), K from the dense float64 reference, x zero at padding."""
    s4 = tiny_model().encoder.block[0].layer[0].s4
    x = torch.randn(2, L, 64, dtype=F64)
    mask = torch.ones(2, L)
    mask[1, L // 2 + 1 :] = 0
    k = s4.kernel
    K = s4_kernel_ref(*s4_parameters(k.log_dt, k.Lambda_re_log, k.Lambda_im, k.P, k.B, k.C, F64), L)
    u = x * mask[..., None]
    y = F.gelu(bidirectional_conv_ref(u, K) + s4.D * u)
    expected = F.glu(y @ s4.output_linear.weight.T + s4.output_linear.bias, dim=-1)
    assert rel_err(s4(x, mask), expected) < 1e-10
    with torch.no_grad():
        s4.chunk_channels = 5  # no_grad path in channel chunks
        assert rel_err(s4(x, mask), expected) < 1e-10


@pytest.mark.parametrize("with_s4", [False, True])
def test_reach_beyond_the_local_radius_comes_from_the_s4_branch(with_s4):
    """Two local layers of radius 4 carry a change at position 3 to positions 3 - 8 .. 3 + 8 at most; the S4
    branch of layer 0 carries it across the whole input."""
    model = tiny_model()
    if not with_s4:  # the branch's output (GLU of a zero projection) becomes exactly zero
        model.encoder.block[0].layer[0].s4.output_linear.weight.data.zero_()
        model.encoder.block[0].layer[0].s4.output_linear.bias.data.zero_()
    ids = random_ids(1, 60)
    changed = ids.clone()
    changed[0, 3] = (ids[0, 3] + 1) % VOCAB
    diff = (encode(model, changed) - encode(model, ids)).abs().amax(-1)[0]
    reached = torch.nonzero(diff > 1e-12).flatten()
    if with_s4:
        assert reached.tolist() == list(range(60))
    else:
        assert reached.max().item() == 3 + 2 * 4
        assert diff[3 + 2 * 4 + 1 :].abs().max().item() == 0.0


def test_padding_does_not_change_real_positions():
    model = tiny_model()
    ids = random_ids(1, 23)
    reference = encode(model, ids, torch.ones_like(ids))
    labels = random_ids(1, 5, seed=9)
    logits = model(input_ids=ids, labels=labels).logits
    for pad in (1, 6, 20):
        padded = torch.cat([ids, random_ids(1, pad, seed=pad)], dim=1)  # garbage tokens under the mask
        mask = torch.cat([torch.ones_like(ids), torch.zeros(1, pad, dtype=torch.long)], dim=1)
        assert rel_err(encode(model, padded, mask)[:, :23], reference) < 1e-10
        assert rel_err(model(input_ids=padded, attention_mask=mask, labels=labels).logits, logits) < 1e-10
    # without the mask the garbage does leak into the real positions (through S4 and attention)
    assert rel_err(encode(model, padded)[:, :23], reference) > 1e-3


@pytest.mark.parametrize("L", [1, 2, 127, 131])
def test_odd_prime_and_single_token_lengths_train_and_generate(L):
    model = tiny_model().train()
    ids = random_ids(2, L)
    loss = model(input_ids=ids, labels=random_ids(2, 3, seed=2)).loss
    loss.backward()
    kernel = model.encoder.block[0].layer[0].s4.kernel
    assert torch.isfinite(loss) and torch.isfinite(kernel.C.grad).all() and kernel.C.grad.abs().sum() > 0
    assert all(p.grad is None for p in (kernel.Lambda_re_log, kernel.Lambda_im, kernel.P, kernel.B))
    out = model.eval().generate(input_ids=ids, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (2, 4)


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny_model().train()
    ids, labels = random_ids(2, 19), random_ids(2, 4, seed=3)

    def grads():
        model.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    set_activation_checkpointing(model, True)
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and any(".s4." in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-9, atol=1e-12)


def test_a_loaded_checkpoint_keeps_A_and_B_frozen(tmp_path):
    """Loading makes fresh Parameters; A and B stay frozen all the same (the round trip of the logits
    is tests/test_models.py's, for every family)."""
    build("spade", "tiny", seed=4).model.save_pretrained(tmp_path / "ckpt")
    kernel = load(tmp_path / "ckpt").model.encoder.block[0].layer[0].s4.kernel
    kernel(9).sum().backward()
    assert [name for name, p in kernel.named_parameters() if p.grad is not None] == ["log_dt", "C"]


def test_half_precision_keeps_s4_parameters_float32():
    model = build("spade", "tiny").model.to(torch.bfloat16)
    s4 = model.encoder.block[0].layer[0].s4
    assert s4.output_linear.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in [s4.D, *s4.kernel.parameters()])
    names = model.no_weight_decay_parameter_names()
    assert len(names) == 7 and all(".s4." in n for n in names)


def test_forward_refuses_unknown_keywords_and_two_caches():
    model = tiny_model()
    ids = random_ids(1, 5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        model(input_ids=ids, decoder_input_ids=ids, bogus=1)
    with pytest.raises(ValueError, match="not both"):
        model(input_ids=ids, decoder_input_ids=ids, cache=object(), past_key_values=object())


def test_config_refuses_other_encoder_attention():
    with pytest.raises(ValueError, match="SPADE's encoder attention is local, got 'transient-global'"):
        SpadeConfig(encoder_attention_type="transient-global")
