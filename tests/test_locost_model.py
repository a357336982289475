"""LOCOST model: encoder semantics, decoder against Hugging Face T5, cache, save/load, converter, memory."""

import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

import models.locost.modeling_locost as modeling
from models.compat import output_cache, set_activation_checkpointing
from models.locost import (
    PRESETS,
    LocostConfig,
    LocostForConditionalGeneration,
    load_released_state_dict,
    to_released_state_dict,
)
from models.ssm.fftconv import bidirectional_conv_ref, fast_fft_size
from models.ssm.s4d import s4d_discretize, ssm_kernel_ref

torch.set_num_threads(1)
F64 = torch.float64
VOCAB = 64


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def tiny_config(**overrides):
    return LocostConfig(**{**PRESETS["tiny"], "vocab_size": VOCAB, "dropout_rate": 0.0, **overrides})


def tiny_model(seed=0, scramble=False, **overrides):
    """float64 tiny model; `scramble` gives every non-kernel weight a large random value so that greedy
    decoding produces varied tokens (a freshly initialised T5 decoder mostly echoes its input token)."""
    torch.manual_seed(seed)
    model = LocostForConditionalGeneration(tiny_config(**overrides)).double().eval()
    if scramble:
        for name, p in model.named_parameters():
            if ".kernel." not in name:
                p.data.normal_(0.0, 0.3 if p.dim() > 1 else 1.0)
    return model


def random_ids(batch, length, seed=1):
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


# --- encoder semantics ---------------------------------------------------------------------------------


def encode(model, ids, mask=None):
    return model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("overrides", [{}, {"bidirectional": False}, {"gating": False}])
def test_padding_does_not_change_real_positions(overrides):
    model = tiny_model(**overrides)
    ids = random_ids(1, 11)
    reference = encode(model, ids, torch.ones_like(ids))
    for pad in (1, 6, 20):
        padded = torch.cat([ids, random_ids(1, pad, seed=pad)], dim=1)  # garbage tokens under the mask
        mask = torch.cat([torch.ones_like(ids), torch.zeros(1, pad, dtype=torch.long)], dim=1)
        assert rel_err(encode(model, padded, mask)[:, :11], reference) < 1e-10
    # without the mask, the garbage tokens do leak into the real positions (bidirectional case)
    if overrides.get("bidirectional", True):
        assert rel_err(encode(model, padded)[:, :11], reference) > 1e-3


@pytest.mark.parametrize("bidirectional", [False, True])
def test_causal_encoder_has_no_look_ahead(bidirectional):
    model = tiny_model(bidirectional=bidirectional)
    ids = random_ids(2, 17)
    changed = ids.clone()
    changed[:, 9] = (ids[:, 9] + 1) % VOCAB
    before, after = encode(model, ids), encode(model, changed)
    assert (after[:, 9:] - before[:, 9:]).abs().amax() > 1e-3
    past_change = (after[:, :9] - before[:, :9]).abs().amax()
    if bidirectional:
        assert past_change > 1e-3
    else:
        assert past_change < 1e-12


def test_no_grad_chunked_encoder_matches_full_path(monkeypatch):
    model = tiny_model(ssm_chunk_channels=5)
    ids, mask = random_ids(2, 23), torch.ones(2, 23, dtype=torch.long)
    mask[1, 15:] = 0
    full = encode(model, ids, mask)  # grad enabled: full-width SSM, unchunked FFN
    monkeypatch.setattr(modeling, "FFN_CHUNK_ELEMENTS", 2 * 3 * model.config.d_ff)  # 3-token FFN chunks
    monkeypatch.setattr(modeling, "TOKEN_CHUNK_ELEMENTS", 2 * 4 * model.config.d_model)  # 4-token blocks
    monkeypatch.setattr(modeling, "OUTPUT_GROUP_ELEMENTS", 2 * 23 * 10)  # in-place SSM: 2 chunks a group
    with torch.no_grad():
        chunked = encode(model, ids, mask)
    assert rel_err(chunked, full) < 1e-12


def test_no_grad_encoder_leaves_inputs_and_hidden_states_intact():
    """The in-place residual of the no-grad path writes only into tensors the layer created."""
    model = tiny_model()
    embeds = torch.randn(2, 19, model.config.d_model, dtype=F64)
    given = embeds.clone()
    expected = model.get_encoder()(inputs_embeds=embeds, output_hidden_states=True).hidden_states
    with torch.no_grad():
        states = model.get_encoder()(inputs_embeds=embeds, output_hidden_states=True).hidden_states
        last = model.get_encoder()(inputs_embeds=embeds).last_hidden_state  # the in-place path
    assert torch.equal(embeds, given)
    assert rel_err(last, model.get_encoder()(inputs_embeds=embeds).last_hidden_state) < 1e-12
    for state, reference in zip(states, expected, strict=True):
        assert rel_err(state, reference) < 1e-12


def test_automatic_channel_chunks_bound_fft_buffers():
    with torch.device("meta"):
        ssm = modeling.LocostSSM(LocostConfig(**PRESETS["small"]))
    u = torch.empty(1, 600_000, 512, device="meta")
    chunks = ssm._channel_chunks(u)
    size = chunks[0].stop - chunks[0].start
    assert len(chunks) > 1 and chunks[-1].stop == 512
    assert size * fast_fft_size(1_200_000) * 8 <= 256 * 2**20  # complex64 spectrum of one chunk
    assert len(ssm._channel_chunks(torch.empty(1, 4096, 512, device="meta"))) == 1


def test_ssm_saves_no_complex_or_kernel_factor_tensors_for_backward():
    """Training-time SSM keeps only real tensors no larger than an activation or the (c, H, L) kernel."""
    model = LocostForConditionalGeneration(tiny_config(d_state=32)).train()
    B, L, H = 2, 300, model.config.d_model
    saved = []

    def pack(t):
        saved.append((t.dtype, t.numel()))
        return t

    layer = model.encoder.block[0].layer[0]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(torch.randn(B, L, H, requires_grad=True), torch.ones(B, L))
    assert saved and not any(dtype.is_complex for dtype, _ in saved)
    assert max(n for _, n in saved) <= max(B * L * H, 2 * H * L)


def kernel_builds(model):
    return sum(m.builds for m in model.modules() if isinstance(m, modeling.LocostS4DKernel))


def test_training_builds_each_kernel_once_per_step():
    """The analytic kernel backward needs no second kernel build (no recomputation in backward)."""
    model = LocostForConditionalGeneration(tiny_config(reuse_kernel=True)).train()
    loss = model(input_ids=random_ids(1, 9), labels=random_ids(1, 4)).loss
    assert kernel_builds(model) == model.config.num_layers
    loss.backward()
    assert kernel_builds(model) == model.config.num_layers


def test_reused_kernel_matches_fresh_kernels_and_is_rebuilt_when_parameters_change(monkeypatch):
    model, fresh = tiny_model(reuse_kernel=True), tiny_model()
    layers = model.config.num_layers
    ids = random_ids(2, 40)
    monkeypatch.setattr(modeling, "SSM_CHUNK_ELEMENTS", 2 * 160 * 20)  # several channel chunks per layer
    with torch.no_grad():
        first = encode(model, ids)
        assert kernel_builds(model) == layers and torch.equal(encode(model, ids), first)  # bit-identical
        for length in (40, 17, 1):  # shorter inputs slice the kept kernel
            assert rel_err(encode(model, ids[:, :length]), encode(fresh, ids[:, :length])) < 1e-12
        assert kernel_builds(model) == layers
        encode(model, random_ids(2, 60))  # longer: built again at the new length
        assert kernel_builds(model) == 2 * layers
    kernel = model.encoder.block[0].layer[0].ssm_layer.kernel
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    assert kernel._cache is None  # dropped by train()
    model(input_ids=ids, labels=random_ids(2, 4)).loss.backward()
    optimizer.step()
    fresh.load_state_dict(model.state_dict())
    model.eval()
    builds = kernel_builds(model)
    with torch.no_grad():
        assert rel_err(encode(model, ids), encode(fresh, ids)) < 1e-12
        assert kernel_builds(model) == builds + layers
        model.load_state_dict(tiny_model(seed=3).state_dict())  # in-place copy into the same storage
        assert rel_err(encode(model, ids), encode(tiny_model(seed=3), ids)) < 1e-12
    assert kernel_builds(model) == builds + 2 * layers


def _ema_copy(model, other):  # an EMA / averaged-weights swap: p.data.copy_(ema)
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        p.data.copy_(q.data)


def _data_add(model, other):  # in-place arithmetic on .data of the kernel parameters only
    for name, p in model.named_parameters():
        if ".kernel." in name:
            p.data.add_(dict(other.named_parameters())[name].data - p.data)


def _flatten(model):  # view every parameter into one flat buffer (as flat-parameter optimizers do)
    params = list(model.parameters())
    model.flat = torch.cat([p.detach().flatten() for p in params])
    start = 0
    for p in params:
        p.data = model.flat[start : start + p.numel()].view_as(p)
        start += p.numel()


def _flat_buffer(model, other):  # the flat buffer updated in place
    model.flat.copy_(torch.cat([q.detach().flatten() for q in other.parameters()]))


def _one_entry(model, other):  # one value of one layer's C, written through .data
    name = "encoder.block.1.layer.0.ssm_layer.kernel.C"
    dict(model.named_parameters())[name].data[1, 3, 2, 0] += 0.5
    dict(other.named_parameters())[name].data[1, 3, 2, 0] += 0.5


@pytest.mark.parametrize("write", [_ema_copy, _data_add, _flat_buffer, _one_entry])
def test_kept_kernel_follows_parameter_writes_through_data(write):
    """`.data` writes change neither version counter nor data pointer; the kept kernel must still follow."""
    model, fresh, target = tiny_model(reuse_kernel=True), tiny_model(), tiny_model(seed=5)
    if write is _one_entry:
        target = tiny_model()
    ids = random_ids(2, 33)
    if write is _flat_buffer:
        _flatten(model)
    with torch.no_grad():
        encode(model, ids)  # kernel kept
        write(model, target)
        fresh.load_state_dict(model.state_dict())
        for length in (33, 20):
            assert rel_err(encode(model, ids[:, :length]), encode(fresh, ids[:, :length])) < 1e-12
        builds = kernel_builds(model)
        encode(model, ids)  # unchanged since: served from the kept kernel
        assert kernel_builds(model) == builds


@pytest.mark.parametrize("lengths", [(40, 40), (40, 17), (25, 9)])
def test_kernel_kept_under_inference_mode_serves_input_gradients(lengths):
    """A kernel built under torch.inference_mode() is served later with gradients on (frozen model, grad
    with respect to the inputs) and gives the same gradient as building the kernel in that call."""
    grads = []
    for model in (tiny_model(reuse_kernel=True), tiny_model()):
        model.requires_grad_(False)
        with torch.inference_mode():
            encode(model, random_ids(1, lengths[0]))
        embeds = model.shared(random_ids(2, lengths[1])).requires_grad_()
        weights = torch.randn(2, lengths[1], model.config.d_model, generator=torch.Generator().manual_seed(2),
                              dtype=F64)
        (model.get_encoder()(inputs_embeds=embeds).last_hidden_state * weights).sum().backward()
        grads.append(embeds.grad)
    assert kernel_builds(model) == 2 * model.config.num_layers  # the no-reuse model built in each call
    assert rel_err(*grads) < 1e-12


def test_kernel_is_not_reused_with_gradients_or_without_the_option():
    for model, grad in ((tiny_model(reuse_kernel=True), True), (tiny_model(), False)):
        with torch.set_grad_enabled(grad):
            encode(model, random_ids(1, 9))
            encode(model, random_ids(1, 9))
        assert kernel_builds(model) == 2 * model.config.num_layers
        assert all(m._cache is None for m in model.modules() if isinstance(m, modeling.LocostS4DKernel))


def test_gating_off_and_causal_configs_train():
    for overrides in ({"gating": False}, {"bidirectional": False}, {"gating": False, "bidirectional": False}):
        model = LocostForConditionalGeneration(tiny_config(**overrides)).train()
        model(input_ids=random_ids(2, 7), labels=random_ids(2, 3)).loss.backward()
        ssm = model.encoder.block[0].layer[0].ssm_layer
        assert (ssm.q_proj is None) == (not model.config.gating)
        assert ssm.kernel.C.shape[0] == (2 if model.config.bidirectional else 1)
        assert ssm.kernel.C.grad is not None and ssm.kernel.C.grad.abs().sum() > 0


# --- decoder, loss, generation -------------------------------------------------------------------------


def test_loss_is_shifted_cross_entropy_ignoring_minus_100():
    model = tiny_model()
    ids, labels = random_ids(2, 9), random_ids(2, 5, seed=3)
    labels[1, 3:] = -100
    decoder_input_ids = torch.cat([torch.zeros(2, 1, dtype=torch.long), labels[:, :-1]], dim=1).clamp_min(0)
    logits = model(input_ids=ids, decoder_input_ids=decoder_input_ids).logits
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(model(input_ids=ids, labels=labels).loss, expected, rtol=1e-12)


def test_cached_decoding_matches_full_forward():
    model = tiny_model(scramble=True)
    ids, mask = random_ids(2, 12), torch.ones(2, 12, dtype=torch.long)
    mask[0, 8:] = 0
    targets = random_ids(2, 6, seed=5)
    full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, use_cache=False).logits
    encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)
    cache, steps = None, []
    for t in range(6):
        out = model(
            encoder_outputs=encoder_outputs,
            attention_mask=mask,
            decoder_input_ids=targets[:, t : t + 1],
            cache=cache,
            use_cache=True,
        )
        cache = output_cache(out)
        steps.append(out.logits)
    assert cache.get_seq_length() == 6
    assert rel_err(torch.cat(steps, dim=1), full) < 1e-10


def greedy_without_cache(model, ids, mask, steps):
    decoded = torch.full((ids.shape[0], 1), model.config.decoder_start_token_id)
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoded, use_cache=False).logits
        decoded = torch.cat([decoded, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return decoded


def test_greedy_generate_matches_manual_loop_and_beam_search_runs():
    model = tiny_model(scramble=True)
    model.generation_config.eos_token_id = None  # fixed length, so both loops run the same number of steps
    ids, mask = random_ids(2, 15), torch.ones(2, 15, dtype=torch.long)
    mask[1, 10:] = 0
    generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    assert torch.equal(generated, greedy_without_cache(model, ids, mask, 8))
    assert len(set(generated[:, 1:].flatten().tolist())) > 2  # not a degenerate repetition
    beams = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, num_beams=2, do_sample=False)
    assert beams.shape == (2, 9) and beams.min() >= 0 and beams.max() < VOCAB


def test_generate_projects_cross_attention_keys_and_values_once_per_layer():
    """The cross-attention K/V of every decoder layer enter the cache at the first step and are reused:
    one projection of the encoder output per layer per generate call, not one per step."""
    model = tiny_model(scramble=True, num_decoder_layers=3)
    calls = {}
    for i, block in enumerate(model.decoder.block):
        for name in ("k", "v"):
            calls[i, name] = 0
            getattr(block.layer[1].EncDecAttention, name).register_forward_hook(
                lambda *args, key=(i, name): calls.__setitem__(key, calls[key] + 1))
    model.generate(input_ids=random_ids(2, 15), max_new_tokens=10, min_new_tokens=10, do_sample=False)
    assert calls == {(i, name): 1 for i in range(3) for name in ("k", "v")}


def test_forward_refuses_unknown_keywords_and_two_caches():
    model = tiny_model()
    ids = random_ids(1, 9)
    with pytest.raises(TypeError, match="unexpected keyword argument 'cache_params'"):
        model(input_ids=ids, decoder_input_ids=ids[:, :2], cache_params=None)
    out = model(input_ids=ids, decoder_input_ids=ids[:, :2], use_cache=True)
    with pytest.raises(ValueError, match="not both"):
        model(input_ids=ids, decoder_input_ids=ids[:, 2:3], cache=output_cache(out),
              past_key_values=output_cache(out))
    with pytest.raises(ValueError, match="does not return attention weights"):
        model(input_ids=ids, decoder_input_ids=ids[:, :2], output_attentions=True)


def test_older_cache_keyword_gives_the_same_logits():
    """`past_key_values` (transformers < 5.24's name) is accepted and means the same cache."""
    model = tiny_model(scramble=True)
    ids, targets = random_ids(1, 11), random_ids(1, 3, seed=4)
    logits = {}
    for keyword in ("cache", "past_key_values"):
        first = model(input_ids=ids, decoder_input_ids=targets[:, :2], use_cache=True)
        step = model(input_ids=ids, decoder_input_ids=targets[:, 2:], use_cache=True,
                     **{keyword: output_cache(first)})
        logits[keyword] = step.logits
    assert torch.equal(logits["cache"], logits["past_key_values"])


def test_our_calls_raise_no_deprecation_warning(caplog):
    """generate (greedy and beam), a cached forward and activation checkpointing on the installed
    transformers: no FutureWarning/DeprecationWarning from transformers, no deprecation notice logged."""
    import logging

    from models import build

    logging.Logger.warning_once.cache_clear()  # transformers logs each notice once per process
    handle = build("locost", "tiny")
    batch = handle.make_batch(20, target_len=4)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "transformers"):
        warnings.simplefilter("always")
        logger = logging.getLogger("transformers")
        logger.addHandler(caplog.handler)
        try:
            handle.generate(batch, new_tokens=3)
            handle.model.generate(input_ids=batch["input_ids"], max_new_tokens=3, num_beams=2)
            handle.gradient_checkpointing(True).train_step(batch)
            handle.gradient_checkpointing(False)
        finally:
            logger.removeHandler(caplog.handler)
    ours = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))
            and "transformers" in w.filename]
    assert ours == []
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


def test_absorbed_cross_attention_matches_cached_path_and_keeps_no_kv():
    cached, absorbed = tiny_model(scramble=True), tiny_model(cross_attention="absorbed")
    absorbed.load_state_dict(cached.state_dict())
    ids, mask = random_ids(2, 14), torch.ones(2, 14, dtype=torch.long)
    mask[1, 9:] = 0
    targets = random_ids(2, 6, seed=4)
    logits = [m(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, use_cache=False).logits
              for m in (cached, absorbed)]
    assert rel_err(logits[1], logits[0]) < 1e-12
    step = absorbed(input_ids=ids, attention_mask=mask, decoder_input_ids=targets[:, :1], use_cache=True)
    cache = output_cache(step)
    assert cache.self_attention_cache.get_seq_length() == 1
    assert not any(getattr(layer, "keys", None) is not None and layer.keys.numel()
                   for layer in cache.cross_attention_cache.layers)
    for model in (cached, absorbed):
        model.generation_config.eos_token_id = None
    generated = [m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
                 for m in (cached, absorbed)]
    assert torch.equal(generated[1], generated[0])
    assert torch.equal(generated[1], greedy_without_cache(absorbed, ids, mask, 8))
    assert len(set(generated[0][:, 1:].flatten().tolist())) > 2


def test_cross_attention_option_is_checked():
    with pytest.raises(ValueError, match="cross_attention must be one of"):
        tiny_config(cross_attention="none")


def test_generate_with_unequal_encoder_and_decoder_depths():
    """generate() sizes its cache from config.num_hidden_layers, which must mean the decoder's depth."""
    model = tiny_model(num_layers=1, num_decoder_layers=3)
    assert model.config.num_hidden_layers == 3
    for beams in (1, 2):
        out = model.generate(input_ids=random_ids(2, 9), max_new_tokens=3, num_beams=beams, do_sample=False)
        assert out.shape[0] == 2


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny_model().train()
    ids, labels = random_ids(2, 13), random_ids(2, 5)

    def gradients():
        model.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    calls = []
    for block in (model.encoder.block[1], model.decoder.block[1]):
        block.layer[0].register_forward_hook(lambda *args: calls.append(1))
    plain = gradients()
    assert len(calls) == 2
    set_activation_checkpointing(model, True)
    calls.clear()
    checkpointed = gradients()
    assert len(calls) == 4  # each block ran again during backward
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, rtol=1e-10, atol=1e-12), name


# --- save / load, dtype ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_save_and_load_round_trip(tmp_path, tie):
    model = tiny_model(tie_word_embeddings=tie).float()
    ids = random_ids(2, 10)
    decoder_input_ids = random_ids(2, 4, seed=2)
    expected = model(input_ids=ids, decoder_input_ids=decoder_input_ids).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    for loaded in (
        LocostForConditionalGeneration.from_pretrained(tmp_path),
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path),
    ):
        assert type(loaded) is LocostForConditionalGeneration
        assert loaded.no_weight_decay_parameter_names() == model.no_weight_decay_parameter_names()
        assert (loaded.lm_head.weight is loaded.shared.weight) == tie
        assert torch.equal(loaded.eval()(input_ids=ids, decoder_input_ids=decoder_input_ids).logits, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cast", ["to", "method", "handle"])
def test_half_precision_casts_keep_ssm_parameters_bit_identical(dtype, cast):
    """After `.to(dtype)`, `.bfloat16()`/`.half()` or `ModelHandle.to(dtype=...)`, SSM parameters are
    float32 and equal, bit for bit, to what they were (not float32 values rounded through half)."""
    from models import build

    handle = build("locost", "tiny")
    names = handle.model.no_weight_decay_parameter_names()
    params = dict(handle.model.named_parameters())
    before = {name: params[name].detach().clone() for name in names}
    if cast == "to":
        handle.model.to(dtype)
    elif cast == "method":
        handle.model.half() if dtype == torch.float16 else handle.model.bfloat16()
    else:
        handle.to("cpu", dtype=dtype)
    params = dict(handle.model.named_parameters())
    assert params["shared.weight"].dtype == dtype
    for name in names:
        assert params[name].dtype == torch.float32, name
        assert torch.equal(params[name], before[name]), name


def test_half_precision_keeps_ssm_parameters_float32(tmp_path):
    LocostForConditionalGeneration(tiny_config()).save_pretrained(tmp_path)
    model = LocostForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    ssm = model.encoder.block[0].layer[0].ssm_layer
    assert ssm.k_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in [ssm.D, *ssm.kernel.parameters()])
    with torch.no_grad():
        logits = model(input_ids=random_ids(1, 33), decoder_input_ids=random_ids(1, 3)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "preset, vocab, low, high", [("base", 32100, 225e6, 245e6), ("small", 32128, 50e6, 58e6)]
)
def test_preset_parameter_counts(preset, vocab, low, high):
    with torch.device("meta"):
        model = LocostForConditionalGeneration(LocostConfig(**{**PRESETS[preset], "vocab_size": vocab}))
    assert model.lm_head.weight is model.shared.weight
    assert low < sum(p.numel() for p in model.parameters()) < high
    no_decay = model.no_weight_decay_parameter_names()
    assert len(no_decay) == 6 * model.config.num_layers  # D, log_dt, A_re_log, A_im, B, C per layer
    assert all(getattr(model.get_parameter(name), "_no_weight_decay", False) for name in no_decay)


# --- the released checkpoint's layout --------------------------------------------------------------------


def released_layout_state_dict(config, seed=0):
    """Random tensors under the released checkpoint's key names and shapes (written from its description)."""
    g = torch.Generator().manual_seed(seed)
    H, M, F_, V = config.d_model, config.d_state // 2, config.d_ff, config.vocab_size
    inner = config.num_heads * config.d_kv

    def w(*shape):
        return torch.randn(*shape, generator=g) * shape[-1] ** -0.5

    def norm():
        return 1 + 0.1 * torch.randn(H, generator=g)

    sd = {"shared.weight": torch.randn(V, H, generator=g)}
    for i in range(config.num_layers):
        p = f"encoder.block.{i}.layer."
        sd[p + "0.layer_prenorm.weight"] = norm()
        for name in ("q_proj", "k_proj", "output_linear"):
            sd[p + f"0.ssm_layer.{name}.weight"] = w(H, H)
            sd[p + f"0.ssm_layer.{name}.bias"] = 0.1 * torch.randn(H, generator=g)
        sd[p + "0.ssm_layer.D"] = torch.randn(H, generator=g)
        sd[p + "0.ssm_layer.kernel.log_dt"] = torch.empty(H).uniform_(
            math.log(1e-3), math.log(0.1), generator=g
        )
        sd[p + "0.ssm_layer.kernel.C"] = torch.randn(2, H, M, 2, generator=g)
        sd[p + "0.ssm_layer.kernel.B"] = torch.randn(H, M, 2, generator=g)
        sd[p + "0.ssm_layer.kernel.inv_A_real"] = math.log(0.5) + 0.3 * torch.randn(H, M, generator=g)
        sd[p + "0.ssm_layer.kernel.A_imag"] = math.pi * torch.arange(M) + torch.randn(H, M, generator=g)
        sd[p + "1.layer_norm.weight"] = norm()
        sd[p + "1.DenseReluDense.wi_0.weight"] = w(F_, H)
        sd[p + "1.DenseReluDense.wi_1.weight"] = w(F_, H)
        sd[p + "1.DenseReluDense.wo.weight"] = w(H, F_)
    for i in range(config.num_decoder_layers):
        p = f"decoder.block.{i}.layer."
        for j, attention in ((0, "SelfAttention"), (1, "EncDecAttention")):
            for name in "qkv":
                sd[p + f"{j}.{attention}.{name}.weight"] = w(inner, H)
            sd[p + f"{j}.{attention}.o.weight"] = w(H, inner)
            sd[p + f"{j}.layer_norm.weight"] = norm()
        if i == 0:
            sd[p + "0.SelfAttention.relative_attention_bias.weight"] = torch.randn(
                config.relative_attention_num_buckets, config.num_heads, generator=g
            )
        sd[p + "2.layer_norm.weight"] = norm()
        sd[p + "2.DenseReluDense.wi_0.weight"] = w(F_, H)
        sd[p + "2.DenseReluDense.wi_1.weight"] = w(F_, H)
        sd[p + "2.DenseReluDense.wo.weight"] = w(H, F_)
    sd["encoder.final_layer_norm.weight"] = norm()
    sd["decoder.final_layer_norm.weight"] = norm()
    for copy in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        sd[copy] = sd["shared.weight"]
    return sd


def reference_encoder(sd, config, ids, mask):
    """The paper's encoder written directly on the released tensors with the reference SSM functions."""

    def rms(x, weight):
        return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + config.layer_norm_epsilon)

    h = sd["shared.weight"][ids]
    for i in range(config.num_layers):
        p = f"encoder.block.{i}.layer."
        s = p + "0.ssm_layer."
        x = rms(h, sd[p + "0.layer_prenorm.weight"])
        k = (x @ sd[s + "k_proj.weight"].T + sd[s + "k_proj.bias"]) * mask[..., None]
        q = x @ sd[s + "q_proj.weight"].T + sd[s + "q_proj.bias"]
        kernel = [sd[s + "kernel." + n] for n in ("log_dt", "inv_A_real", "A_imag", "B", "C")]
        K = ssm_kernel_ref(*s4d_discretize(*kernel, dtype=F64), ids.shape[1])
        y = q * (bidirectional_conv_ref(k, K) + sd[s + "D"] * k)
        h = h + y @ sd[s + "output_linear.weight"].T + sd[s + "output_linear.bias"]
        x = rms(h, sd[p + "1.layer_norm.weight"])
        d = p + "1.DenseReluDense."
        gated = F.gelu(x @ sd[d + "wi_0.weight"].T, approximate="tanh") * (x @ sd[d + "wi_1.weight"].T)
        h = h + gated @ sd[d + "wo.weight"].T
    return rms(h, sd["encoder.final_layer_norm.weight"])


def test_released_checkpoint_converts_and_matches_independent_computation():
    config = tiny_config()
    released = released_layout_state_dict(config)
    model = load_released_state_dict(released, config).double()
    sd64 = {k: v.double() for k, v in released.items()}
    ids, mask = random_ids(2, 14), torch.ones(2, 14, dtype=torch.long)
    mask[1, 9:] = 0
    decoder_input_ids = random_ids(2, 5, seed=7)

    # encoder == the formula on the released tensors (real positions; padded ones are never read)
    encoder_out = encode(model, ids, mask)
    expected = reference_encoder(sd64, config, ids, mask)
    assert rel_err(encoder_out[0], expected[0]) < 1e-10
    assert rel_err(encoder_out[1, :9], expected[1, :9]) < 1e-10

    # decoder + LM head == Hugging Face T5 (eager attention) with the released decoder tensors
    # (T5LayerNorm computes its variance in float32, hence the looser tolerance)
    t5_config = T5Config(
        vocab_size=VOCAB,
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=1,
        num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        decoder_start_token_id=0,
    )
    t5 = T5ForConditionalGeneration(t5_config).double().eval()
    t5.config._attn_implementation = "eager"
    missing, unexpected = t5.load_state_dict(
        {k: v for k, v in sd64.items() if not k.startswith("encoder.")}, strict=False
    )
    assert not unexpected and all(k.startswith("encoder.") for k in missing)
    t5_logits = t5(
        encoder_outputs=(encoder_out,), attention_mask=mask, decoder_input_ids=decoder_input_ids
    ).logits
    logits = model(
        encoder_outputs=(encoder_out,), attention_mask=mask, decoder_input_ids=decoder_input_ids
    ).logits
    assert rel_err(logits, t5_logits) < 1e-6

    # ours -> released -> ours reproduces the logits exactly and writes every released key
    back = to_released_state_dict(model.float().state_dict())
    assert set(back) == set(released)
    assert all(back[k].shape == v.shape for k, v in released.items())
    reloaded = load_released_state_dict(back, config)
    assert torch.equal(
        reloaded(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits,
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits,
    )


def test_converter_rejects_mismatched_keys():
    config = tiny_config()
    released = released_layout_state_dict(config)
    released["encoder.block.0.layer.0.ssm_layer.kernel.unknown"] = torch.zeros(1)
    with pytest.raises(KeyError, match="unknown"):
        load_released_state_dict(released, config)


def write_released_checkpoint(directory, config, weights="pytorch_model.bin", **fields):
    """A checkpoint directory in the released layout: the release's config.json (its LOCOSTConfig
    fields, no model_type) and its state dict."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = {"architectures": ["LOCOSTForConditionalGeneration"], "vocab_size": config.vocab_size,
           "d_model": config.d_model, "d_state": config.d_state, "d_kv": config.d_kv, "d_ff": config.d_ff,
           "num_layers": config.num_layers, "num_decoder_layers": config.num_decoder_layers,
           "num_heads": config.num_heads, "num_ssm_heads": 1, "local_radius": 127, "global_block_size": 16,
           "feed_forward_proj": "gated-gelu", "encoder_attention_type": "local", "dropout_rate": 0.0,
           "use_fast_fft_conv": True, "bidirectional": True, "gating": True, "pad_token_id": 0,
           "eos_token_id": 1, "decoder_start_token_id": 0, "is_encoder_decoder": True, **fields}
    (directory / "config.json").write_text(json.dumps(raw))
    state_dict = released_layout_state_dict(config)
    if weights.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.clone() for k, v in state_dict.items()}, str(directory / weights))
    else:
        torch.save(state_dict, directory / weights)
    return state_dict


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_a_released_layout_checkpoint_loads_converted_with_its_fast_path(tmp_path, weights):
    from models import load

    config = tiny_config()
    released = write_released_checkpoint(tmp_path / "released", config, weights)
    handle = load(tmp_path / "released")
    assert handle.family.name == "locost" and handle.model.config.use_fast_fft_conv
    as_trained = load_released_state_dict(released, tiny_config(use_fast_fft_conv=True))
    exact = load_released_state_dict(released, config)
    for length, same in ((32, True), (37, False), (38, False), (64, True)):
        ids = random_ids(2, length)
        out = encode(handle.model, ids)
        assert torch.equal(out, encode(as_trained, ids))
        assert (rel_err(out, encode(exact, ids)) < 1e-5) == same  # exact only at powers of two
    our_layout = tmp_path / "ours"
    handle.model.save_pretrained(our_layout)  # saved in our layout: loads as ours, option kept
    assert load(our_layout).model.config.use_fast_fft_conv


@pytest.mark.parametrize("fields, message", [
    ({"num_ssm_heads": 8}, "num_ssm_heads 8: only 1 SSM head is supported"),
    ({"feed_forward_proj": "relu"}, "feed_forward_proj 'relu': only 'gated-gelu' is supported"),
    ({"d_model": 32}, "state dict does not match the model"),
])
def test_a_released_layout_checkpoint_it_cannot_convert_is_one_error(tmp_path, fields, message):
    from models import load
    from models.errors import NotACheckpointError

    write_released_checkpoint(tmp_path / "released", tiny_config(), **fields)
    with pytest.raises(NotACheckpointError, match=re.escape(message)):
        load(tmp_path / "released")
