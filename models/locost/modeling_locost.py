"""LOCOST (arXiv 2401.17919) as a Hugging Face seq2seq model, in plain PyTorch.

Encoder: shared token embedding (no positional embedding), then per layer (pre-norm, T5 RMSNorm)
    h = h + Dropout(SSM(RMSNorm(h)));  h = h + Dropout(FFN(RMSNorm(h)))
with the gated bidirectional S4D layer of `LocostSSM` and FFN(x) = wo(gelu_tanh(wi_0 x) * wi_1 x).
Decoder: T5 blocks (causal self-attention with relative position bias, cross-attention, gated-GELU FFN),
all attention through `scaled_dot_product_attention` (T5 scores are not scaled: scale=1.0).

Memory: the S4D kernel is built with the sqrt(L) factorisation of `models.ssm.s4d.ssm_kernel`; in
training `models.ssm.s4d.S4DKernel` saves only the kernel's parameters and computes its gradient
analytically, and the FFT convolution (`models.ssm.fftconv`) saves only real inputs. Under
`torch.no_grad()` the SSM runs in channel chunks, the FFN, the RMSNorms and the SSM's output
projection in sequence chunks; in eval the encoder also updates its
residual stream in place, so it holds at most two (B, L, d_model) tensors at once (h and RMSNorm(h)).
`config.cross_attention="absorbed"` computes the decoder's cross-attention from the encoder output
itself and caches no cross-attention K/V (see `LocostAttention`).
Module names follow the released LOCOST checkpoint (LongT5-style), see `convert.py`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
)
from transformers.models.t5.modeling_t5 import T5Attention

from ..compat import cache_field, output_cache, pick_cache
from ..precision import KeepsFloat32
from ..ssm.fftconv import compute_dtype, fast_fft_size, fft_conv, no_autocast, released_fast_conv
from ..ssm.s4 import S4Kernel
from ..ssm.s4d import s4d_kernel
from .configuration_locost import LocostConfig

__all__ = ["LocostForConditionalGeneration", "LocostPreTrainedModel", "LocostEncoder", "LocostDecoder"]

# Under no_grad: complex spectrum elements per SSM channel chunk (B * channels * n, ~256 MB in complex64)
# and d_ff activations per FFN sequence chunk (B * tokens * d_ff, ~256 MB in float32).
SSM_CHUNK_ELEMENTS = 2**25
FFN_CHUNK_ELEMENTS = 2**26
# Values per token block of RMSNorm and the SSM's output projection under no_grad (~64 MB in float32),
# and of y per channel group of `LocostSSM.add_to` (~512 MB).
TOKEN_CHUNK_ELEMENTS = 2**24
OUTPUT_GROUP_ELEMENTS = 2**27
# Largest kernel (c * H * L floats) that `reuse_kernel` keeps per layer: 64 MiB, L = 16K for `small`.
KERNEL_CACHE_BYTES = 2**26


class LocostRMSNorm(nn.Module):
    """T5 RMSNorm: weight * x / sqrt(mean(x^2) + eps), no bias, no mean subtraction, in float32 or wider."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x, out: torch.Tensor | None = None):
        """`out` (no_grad only): where to write the result, e.g. `x` itself."""
        if torch.is_grad_enabled():
            return self._norm(x)
        if out is None:
            out = torch.empty(x.shape, dtype=self.weight.dtype, device=x.device)
        return by_tokens(self._norm, x, out)

    def _norm(self, x):
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(self.weight.dtype)


def by_tokens(fn, x: torch.Tensor, out: torch.Tensor, elements: int = TOKEN_CHUNK_ELEMENTS) -> torch.Tensor:
    """out[:, i] = fn(x[:, i]) over blocks of tokens of about `elements` values of out (x (B, L, ...));
    `out` may be `x` itself. Bounds the transient buffers of token-wise functions under no_grad."""
    B, L = out.shape[:2]
    step = max(1, elements // out[0, 0].numel() // B)
    for start in range(0, L, step):
        out[:, start : start + step] = fn(x[:, start : start + step])
    return out


class LocostS4DKernel(nn.Module):
    """S4D-Lin parameters of H channels with c = 2 (bidirectional) or 1 (causal) output vectors C.

    A = -exp(A_re_log) + i A_im, dt = exp(log_dt); complex B (H, M) and C (c, H, M) are stored as real
    pairs in a trailing dimension of size 2. `forward(L)` returns the real kernels K (c, H, L).

    With `config.reuse_kernel`, in eval mode without gradients the kernel of the longest length asked
    for so far is kept and sliced for every length up to it (K[l] does not depend on L). It is
    rebuilt when a parameter's value changes, however it was written (optimizer steps,
    `load_state_dict`, `p.data.copy_(ema)`, a flat buffer the parameters are views of): it is served
    only while the parameters equal a copy taken when it was built (c H M floats more than the
    parameters, compared in O(c H M) per call; a version counter or data pointer misses `.data`
    writes). It is dropped by `train()` and `.to()`, and not kept above KERNEL_CACHE_BYTES. It is
    built as a normal tensor even under `torch.inference_mode()`, so that it can be served later
    when gradients flow to the inputs of a frozen model. `builds` counts the kernels computed (a call
    served from the kept kernel adds nothing).
    """

    def __init__(self, config: LocostConfig):
        super().__init__()
        H, M = config.d_model, config.d_state // 2
        self.dt_min, self.dt_max = config.dt_min, config.dt_max
        self.log_dt = nn.Parameter(torch.empty(H))
        self.A_re_log = nn.Parameter(torch.empty(H, M))
        self.A_im = nn.Parameter(torch.empty(H, M))
        self.B = nn.Parameter(torch.empty(H, M, 2))
        self.C = nn.Parameter(torch.empty(2 if config.bidirectional else 1, H, M, 2))
        for p in self.parameters():
            p._no_weight_decay = True
        self.reuse_kernel = config.reuse_kernel
        self._cache, self._built_from, self.builds = None, None, 0

    def reset_parameters(self):
        """S4D-Lin: A_n = -1/2 + i pi n, B = 1, C ~ complex normal (variance 1/2 per part), log dt ~ U."""
        H, M = self.A_im.shape
        init.uniform_(self.log_dt, math.log(self.dt_min), math.log(self.dt_max))
        init.constant_(self.A_re_log, math.log(0.5))
        init.copy_(self.A_im, math.pi * torch.arange(M, dtype=self.A_im.dtype).expand(H, M))
        init.copy_(self.B, torch.tensor([1.0, 0.0], dtype=self.B.dtype).expand(H, M, 2))
        init.normal_(self.C, mean=0.0, std=0.5**0.5)

    def train(self, mode: bool = True):
        if mode:
            self._cache = self._built_from = None
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        self._cache = self._built_from = None
        return super()._apply(fn, recurse)

    def forward(self, L: int, channels: slice = slice(None), dtype: torch.dtype = torch.float32):
        L = int(L)
        with no_autocast(self.C):
            K = self._cached(L, dtype)
            if K is not None:
                return K[:, channels, :L]
            self.builds += 1
            params = self.log_dt, self.A_re_log, self.A_im, self.B
            return s4d_kernel(L, *(p[channels] for p in params), self.C[:, channels], dtype)

    def _cached(self, L: int, dtype: torch.dtype) -> torch.Tensor | None:
        """The kept kernel if reuse applies (built now if stale or shorter than L), else None."""
        if not self.reuse_kernel or self.training or torch.jit.is_tracing():
            return None
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return None
        if self._cache is not None and self._cache.dtype == dtype and self._cache.shape[-1] >= L:
            if self._parameters_unchanged():
                return self._cache
        self._cache = self._built_from = None  # a stale kernel goes before a new one is built
        c, H = self.C.shape[:2]
        if c * H * L * torch.finfo(dtype).bits // 8 > KERNEL_CACHE_BYTES:
            return None
        self.builds += 1
        with torch.inference_mode(False), torch.no_grad():  # normal tensors, servable with grad on
            self._built_from = [p.detach().clone() for p in self.parameters()]
            self._cache = s4d_kernel(L, self.log_dt, self.A_re_log, self.A_im, self.B, self.C, dtype)
        return self._cache

    def _parameters_unchanged(self) -> bool:
        """Whether every parameter still equals (device, dtype, shape, values) the copy the kept kernel
        was built from; NaN never equals itself, so a NaN parameter rebuilds the kernel every call."""
        return all(
            kept.device == p.device and kept.dtype == p.dtype and torch.equal(kept, p.detach())
            for kept, p in zip(self._built_from, self.parameters(), strict=True)
        )


class LocostSSM(KeepsFloat32, nn.Module):
    """Gated bidirectional SSM on u (B, L, H):
    k = W_k u + b_k (zero at padding), q = W_q u + b_q, y = q * (K_bi * k + D * k), output W_o y + b_o.
    Without gating y = K_bi * k + D * k. Kernel, D and the convolution run in float32 (float64 for
    float64 inputs); kernel and D stay float32 when the model is cast to half precision.
    """

    def __init__(self, config: LocostConfig):
        super().__init__()
        H = config.d_model
        self.q_proj = nn.Linear(H, H) if config.gating else None
        self.k_proj = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, H)
        self.D = nn.Parameter(torch.empty(H))
        self.D._no_weight_decay = True
        self.kernel = LocostS4DKernel(config) if config.ssm_kernel == "s4d" else S4Kernel(
            H, config.d_state, 2 if config.bidirectional else 1, config.dt_min, config.dt_max)
        self.chunk_channels = config.ssm_chunk_channels
        self.use_fast_fft_conv = config.use_fast_fft_conv

    def float32_parameter_names(self) -> list[str]:
        """D and the kernel's parameters keep their float32 values under `.to(bfloat16)`, `.half()` etc."""
        return ["D", *(f"kernel.{name}" for name, _ in self.kernel.named_parameters())]

    def forward(self, u: torch.Tensor, attention_mask: torch.Tensor | None = None, residual=None):
        """SSM(u) (B, L, H); with `residual` (no_grad only) `add_to(residual, u)` instead."""
        if residual is not None:
            return self.add_to(residual, u, attention_mask)
        if torch.is_grad_enabled():
            return self.output_linear(self._mix(u, attention_mask, slice(None)))
        y = torch.empty_like(u)
        for channels in self._channel_chunks(u):
            y[..., channels] = self._mix(u, attention_mask, channels)
        return by_tokens(self.output_linear, y, y)  # in place: no second (B, L, H) tensor

    def add_to(self, h: torch.Tensor, u: torch.Tensor, attention_mask=None) -> torch.Tensor:
        """No-grad residual step in place: h += W_o SSM(u) + b_o, for u = RMSNorm(h) given.

        Channels go in groups of about OUTPUT_GROUP_ELEMENTS values of y; each group's y is added to h
        through its columns of W_o, so at most h, u and one group are alive (2 x 4 GB and 0.5 GB at
        2M tokens of `small`, instead of the 4 x 4 GB of separate y, W_o y and h + W_o y tensors).
        """
        B, L, H = u.shape
        size = self._chunk_size(u)
        for group in self._channel_chunks(u, size * max(1, OUTPUT_GROUP_ELEMENTS // (B * L * size))):
            y = torch.empty(B, L, group.stop - group.start, dtype=u.dtype, device=u.device)
            for channels in self._channel_chunks(u, size, group):
                y[..., channels.start - group.start : channels.stop - group.start] = self._mix(
                    u, attention_mask, channels)
            weight = self.output_linear.weight[:, group]
            for start in range(0, L, max(1, TOKEN_CHUNK_ELEMENTS // (B * H))):
                rows = slice(start, start + max(1, TOKEN_CHUNK_ELEMENTS // (B * H)))
                h[:, rows] += F.linear(y[:, rows], weight)
        return h.add_(self.output_linear.bias)

    def _chunk_size(self, u: torch.Tensor) -> int:
        B, L, _ = u.shape
        return self.chunk_channels or max(1, SSM_CHUNK_ELEMENTS // (B * fast_fft_size(2 * L)))

    def _channel_chunks(self, u: torch.Tensor, size: int | None = None, within: slice = slice(None)):
        """Slices of `size` channels (default: the FFT-bounded chunk size) covering `within`."""
        first, stop, _ = within.indices(u.shape[-1])
        size = size or self._chunk_size(u)
        return [slice(start, min(start + size, stop)) for start in range(first, stop, size)]

    def _mix(self, u, attention_mask, channels: slice) -> torch.Tensor:
        """y[..., channels] = q * (K_bi * k + D * k); the kernel is not stored for backward (S4D: its
        analytic backward; S4: recomputed)."""
        k = F.linear(u, self.k_proj.weight[channels], self.k_proj.bias[channels])
        if attention_mask is not None:
            k = k * attention_mask[..., None].to(k.dtype)
        dtype = compute_dtype(u, self.D)
        y = self._convolve(k, attention_mask, channels, dtype) + self.D[channels].to(dtype) * k
        if self.q_proj is not None:
            y = y * F.linear(u, self.q_proj.weight[channels], self.q_proj.bias[channels])
        return y.to(u.dtype)


    def _kernel(self, L: int, channels: slice, dtype: torch.dtype) -> torch.Tensor:
        if torch.is_grad_enabled() and isinstance(self.kernel, S4Kernel):  # S4D has its own backward
            return checkpoint(self.kernel, L, channels, dtype, use_reentrant=False)
        return self.kernel(L, channels, dtype)

    def _convolve(self, k, attention_mask, channels: slice, dtype: torch.dtype) -> torch.Tensor:
        """K_bi * k (B, L, channels): exact (`fft_conv`), or with `use_fast_fft_conv` the released fast
        path's convolution, which pads an odd length with one zero input row (k = b_k there, 0 under an
        attention mask) and convolves at the even length."""
        L = k.shape[1]
        if not self.use_fast_fft_conv:
            return fft_conv(k, self._kernel(L, channels, dtype))
        if L % 2:
            pad = self.k_proj.bias[channels].to(k.dtype).expand(k.shape[0], 1, -1)
            k = torch.cat([k, torch.zeros_like(pad) if attention_mask is not None else pad], dim=1)
        return released_fast_conv(k, self._kernel(k.shape[1], channels, dtype))[:, :L]


class LocostDenseGatedGelu(nn.Module):
    """FFN(x) = wo(gelu_tanh(wi_0 x) * wi_1 x), no biases."""

    def __init__(self, config: LocostConfig):
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x):
        return self.wo(self.dropout(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)))


class LocostLayerFF(nn.Module):
    """h + Dropout(FFN(RMSNorm(h))); under no_grad in sequence chunks to bound the (L, d_ff) intermediates."""

    def __init__(self, config: LocostConfig):
        super().__init__()
        self.DenseReluDense = LocostDenseGatedGelu(config)
        self.layer_norm = LocostRMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def _residual(self, h):
        return self.dropout(self.DenseReluDense(self.layer_norm(h)))

    def forward(self, h, inplace: bool = False):
        """`inplace` (no_grad only): write the result into h."""
        if torch.is_grad_enabled():
            return h + self._residual(h)
        B, L, _ = h.shape
        step = max(1, FFN_CHUNK_ELEMENTS // (B * self.DenseReluDense.wi_0.out_features))
        out = h if inplace else torch.empty_like(h)
        for start in range(0, L, step):
            part = h[:, start : start + step]
            out[:, start : start + step] = part + self._residual(part)
        return out


class LocostLayerSSM(nn.Module):
    """h + Dropout(SSM(RMSNorm(h)))."""

    def __init__(self, config: LocostConfig):
        super().__init__()
        self.layer_prenorm = LocostRMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.ssm_layer = LocostSSM(config)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, h, attention_mask=None, inplace: bool = False):
        """`inplace` (no_grad, dropout off): add the SSM's output to h itself (`LocostSSM.add_to`)."""
        if inplace:
            return self.ssm_layer(self.layer_prenorm(h), attention_mask, residual=h)
        return h + self.dropout(self.ssm_layer(self.layer_prenorm(h), attention_mask))


class LocostEncoderBlock(GradientCheckpointingLayer):
    def __init__(self, config: LocostConfig):
        super().__init__()
        self.layer = nn.ModuleList([LocostLayerSSM(config), LocostLayerFF(config)])

    def forward(self, hidden_states, attention_mask=None, inplace: bool = False):
        return self.layer[1](self.layer[0](hidden_states, attention_mask, inplace), inplace)


def _store_without_copy(cache: DynamicCache, layer_idx: int, keys: torch.Tensor, values: torch.Tensor):
    """Put a layer's cross-attention K/V into the cache as they are. ``cache.update`` would
    concatenate them to an empty tensor: a copy of both, 2 x 1.2 GB at 600K tokens for `small`, on
    top of every earlier layer's K/V. Updating with empty slices first creates the cache layer in
    whatever way the installed transformers does it."""
    cache.update(keys[..., :0, :], values[..., :0, :], layer_idx)
    layer = cache.layers[layer_idx]
    layer.keys, layer.values = keys, values


class LocostAttention(nn.Module):
    """T5 multi-head attention through SDPA. Scores are not scaled (scale=1.0); the T5 relative position
    bias and masks arrive as `attn_mask`. Cross-attention without bias or padding gets attn_mask=None,
    which lets SDPA use its memory-efficient kernels (no (heads, T, L) probabilities kept for backward).
    Cross-attention keeps its K/V in the cache (`cross_attention="cached"`, as T5), or with
    `"absorbed"` computes from the encoder output directly (`_absorbed_cross_attention`).
    """

    def __init__(self, config: LocostConfig, layer_idx: int, has_relative_attention_bias: bool = False):
        super().__init__()
        self.layer_idx = layer_idx
        self.d_kv = config.d_kv
        self.absorbed = config.cross_attention == "absorbed"
        self.dropout = config.dropout_rate
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        inner = config.num_heads * config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(
                config.relative_attention_num_buckets, config.num_heads
            )

    def position_bias(self, query_length: int, key_length: int, past_length: int) -> torch.Tensor:
        """(1, heads, query_length, key_length) causal T5 bias for queries at positions past_length + i."""
        device = self.relative_attention_bias.weight.device
        query = torch.arange(query_length, device=device)[:, None] + past_length
        key = torch.arange(key_length, device=device)[None, :]
        buckets = T5Attention._relative_position_bucket(
            key - query, bidirectional=False, num_buckets=self.num_buckets, max_distance=self.max_distance
        )
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]

    def _project(self, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return linear(x).view(x.shape[0], x.shape[1], -1, self.d_kv).transpose(1, 2)

    def forward(self, x, key_value_states=None, attn_mask=None, cache: EncoderDecoderCache | None = None):
        is_cross = key_value_states is not None
        if is_cross and self.absorbed:
            return self.o(self._absorbed_cross_attention(x, key_value_states, attn_mask))
        layer_cache = None
        if cache is not None:
            layer_cache = cache.cross_attention_cache if is_cross else cache.self_attention_cache
        if is_cross and layer_cache is not None and cache.is_updated.get(self.layer_idx):
            keys, values = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross else x
            keys, values = self._project(self.k, source), self._project(self.v, source)
            if layer_cache is not None and is_cross:
                _store_without_copy(layer_cache, self.layer_idx, keys, values)
                cache.is_updated[self.layer_idx] = True
            elif layer_cache is not None:
                keys, values = layer_cache.update(keys, values, self.layer_idx)
        out = F.scaled_dot_product_attention(
            self._project(self.q, x),
            keys,
            values,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=1.0,
        )
        return self.o(out.transpose(1, 2).flatten(2))

    def _absorbed_cross_attention(self, x, encoder_states, attn_mask=None) -> torch.Tensor:
        """Cross-attention straight from the encoder output e (B, L, d_model), per head h:
            softmax(q_h (e W_k,h^T)^T) (e W_v,h^T) = softmax((q_h W_k,h) e^T) e W_v,h^T,
        i.e. the key projection absorbed into the query and the value projection applied after the
        weighted sum. All heads' queries share e as keys and values (one SDPA call with heads x T
        queries), so nothing per input token is computed or kept besides e. Returns (B, T, heads d_kv).
        """
        B, T, _ = x.shape
        heads, d_model = self.k.out_features // self.d_kv, self.k.in_features
        q = self._project(self.q, x)  # (B, heads, T, d_kv)
        queries = torch.einsum("bhtd,hdm->bhtm", q, self.k.weight.view(heads, self.d_kv, d_model))
        states = encoder_states[:, None]  # (B, 1, L, d_model)
        context = F.scaled_dot_product_attention(
            queries.reshape(B, 1, heads * T, d_model),
            states,
            states,
            attn_mask=attn_mask,  # (B, 1, 1, L) padding mask or None
            dropout_p=self.dropout if self.training else 0.0,
            scale=1.0,
        ).view(B, heads, T, d_model)
        out = torch.einsum("bhtm,hdm->bhtd", context, self.v.weight.view(heads, self.d_kv, d_model))
        return out.transpose(1, 2).flatten(2)


class LocostLayerSelfAttention(nn.Module):
    def __init__(self, config: LocostConfig, layer_idx: int):
        super().__init__()
        self.SelfAttention = LocostAttention(config, layer_idx, has_relative_attention_bias=layer_idx == 0)
        self.layer_norm = LocostRMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, h, bias, cache=None):
        return h + self.dropout(self.SelfAttention(self.layer_norm(h), attn_mask=bias, cache=cache))


class LocostLayerCrossAttention(nn.Module):
    def __init__(self, config: LocostConfig, layer_idx: int):
        super().__init__()
        self.EncDecAttention = LocostAttention(config, layer_idx)
        self.layer_norm = LocostRMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, h, encoder_hidden_states, mask=None, cache=None):
        normed = self.layer_norm(h)
        attended = self.EncDecAttention(normed, encoder_hidden_states, attn_mask=mask, cache=cache)
        return h + self.dropout(attended)


class LocostDecoderBlock(GradientCheckpointingLayer):
    def __init__(self, config: LocostConfig, layer_idx: int):
        super().__init__()
        self.layer = nn.ModuleList(
            [
                LocostLayerSelfAttention(config, layer_idx),
                LocostLayerCrossAttention(config, layer_idx),
                LocostLayerFF(config),
            ]
        )

    def forward(self, hidden_states, self_bias, encoder_hidden_states, encoder_mask=None, cache=None):
        h = self.layer[0](hidden_states, self_bias, cache=cache)
        h = self.layer[1](h, encoder_hidden_states, encoder_mask, cache=cache)
        return self.layer[2](h)


def _refuse_attention_weights(output_attentions) -> None:
    """SDPA returns no attention probabilities (and the encoder has no attention): refuse rather than
    silently return none."""
    if output_attentions:
        raise ValueError("LOCOST does not return attention weights (output_attentions=True)")


class _SharedEmbedding:
    """Holds the parent's shared embedding without registering it again (state dicts keep one copy)."""

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, embeddings: nn.Embedding):
        object.__setattr__(self, "embed_tokens", embeddings)

    def _embed(self, input_ids, inputs_embeds):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds")
        return self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds


class LocostEncoder(_SharedEmbedding, nn.Module):
    """SSM encoder: embeddings -> blocks -> final RMSNorm. `attention_mask` (B, L): 1 = token, 0 = padding."""

    main_input_name = "input_ids"

    def __init__(self, config: LocostConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.block = nn.ModuleList([LocostEncoderBlock(config) for _ in range(config.num_layers)])
        self.final_layer_norm = LocostRMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.set_input_embeddings(embed_tokens)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=False,
        output_hidden_states=False,
        return_dict=True,
    ):
        _refuse_attention_weights(output_attentions)
        h = self.dropout(self._embed(input_ids, inputs_embeds))
        # inference updates one residual stream in place (one (B, L, d_model) tensor fewer per layer)
        inplace = not (torch.is_grad_enabled() or self.training or output_hidden_states)
        if inplace and inputs_embeds is not None:
            h = h.clone()  # the caller's tensor stays as given
        hidden_states = (h,) if output_hidden_states else None
        for block in self.block:
            h = block(h, attention_mask, inplace)
            if output_hidden_states:
                hidden_states += (h,)
        h = self.final_layer_norm(h, out=h if inplace else None)
        output = BaseModelOutput(last_hidden_state=self.dropout(h), hidden_states=hidden_states)
        return output if return_dict is not False else output.to_tuple()


class LocostDecoder(_SharedEmbedding, nn.Module):
    """T5 decoder stack. `cache`: an `EncoderDecoderCache` (created when use_cache and None)."""

    def __init__(self, config: LocostConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.block = nn.ModuleList([LocostDecoderBlock(config, i) for i in range(config.num_decoder_layers)])
        self.final_layer_norm = LocostRMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.set_input_embeddings(embed_tokens)

    def self_attention_bias(self, query_length, past_length, attention_mask, dtype) -> torch.Tensor:
        """Relative position bias with the causal mask (and key padding) folded in as -inf-like values."""
        key_length = past_length + query_length
        first_attention = self.block[0].layer[0].SelfAttention
        bias = first_attention.position_bias(query_length, key_length, past_length).to(dtype)
        device = bias.device
        keys = torch.arange(key_length, device=device)
        allowed = keys[None, :] <= torch.arange(query_length, device=device)[:, None] + past_length
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, -key_length:].bool()
        return bias.masked_fill(~allowed, torch.finfo(dtype).min)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        inputs_embeds=None,
        cache=None,
        use_cache=None,
        output_attentions=False,
        output_hidden_states=False,
        return_dict=True,
    ):
        _refuse_attention_weights(output_attentions)
        h = self._embed(input_ids, inputs_embeds)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise TypeError(f"cache must be an EncoderDecoderCache, got {type(cache).__name__}")
        past_length = cache.get_seq_length() if cache is not None else 0
        self_bias = self.self_attention_bias(h.shape[1], past_length, attention_mask, h.dtype)
        encoder_mask = None
        if encoder_attention_mask is not None and not encoder_attention_mask.bool().all():
            encoder_mask = encoder_attention_mask[:, None, None, :].bool()

        h = self.dropout(h)
        hidden_states = (h,) if output_hidden_states else None
        for block in self.block:
            h = block(h, self_bias, encoder_hidden_states, encoder_mask, cache=cache)
            if output_hidden_states:
                hidden_states += (h,)
        output = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=self.dropout(self.final_layer_norm(h)),
            hidden_states=hidden_states,
            **cache_field(cache if use_cache else None),
        )
        return output if return_dict is not False else output.to_tuple()


class LocostPreTrainedModel(PreTrainedModel):
    config_class = LocostConfig
    config: LocostConfig
    base_model_prefix = "locost"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LocostEncoderBlock", "LocostDecoderBlock"]
    _keep_in_fp32_modules_strict = ["ssm_layer.kernel", "ssm_layer.D"]

    @torch.no_grad()
    def _init_weights(self, module):
        """T5 initialisation for embeddings, attention and FFN; S4D-Lin for the SSM kernels."""
        factor = self.config.initializer_factor
        d_model = self.config.d_model
        if isinstance(module, LocostForConditionalGeneration):
            init.normal_(module.shared.weight, mean=0.0, std=factor)
            if not self.config.tie_word_embeddings:
                init.normal_(module.lm_head.weight, mean=0.0, std=factor)
        elif isinstance(module, LocostRMSNorm):
            init.constant_(module.weight, factor)
        elif isinstance(module, LocostDenseGatedGelu):
            init.normal_(module.wi_0.weight, mean=0.0, std=factor * d_model**-0.5)
            init.normal_(module.wi_1.weight, mean=0.0, std=factor * d_model**-0.5)
            init.normal_(module.wo.weight, mean=0.0, std=factor * self.config.d_ff**-0.5)
        elif isinstance(module, LocostAttention):
            inner = self.config.num_heads * self.config.d_kv
            init.normal_(module.q.weight, mean=0.0, std=factor * (d_model * self.config.d_kv) ** -0.5)
            init.normal_(module.k.weight, mean=0.0, std=factor * d_model**-0.5)
            init.normal_(module.v.weight, mean=0.0, std=factor * d_model**-0.5)
            init.normal_(module.o.weight, mean=0.0, std=factor * inner**-0.5)
            if hasattr(module, "relative_attention_bias"):
                init.normal_(module.relative_attention_bias.weight, mean=0.0, std=factor * d_model**-0.5)
        elif isinstance(module, LocostSSM):
            for linear in (module.q_proj, module.k_proj, module.output_linear):
                if linear is not None:
                    init.normal_(linear.weight, mean=0.0, std=factor * d_model**-0.5)
                    init.zeros_(linear.bias)
            init.normal_(module.D, mean=0.0, std=1.0)
        elif isinstance(module, (LocostS4DKernel, S4Kernel)):
            module.reset_parameters()

    def no_weight_decay_parameter_names(self) -> list[str]:
        """SSM kernel parameters and D, which optimizers should exclude from weight decay. (Freshly built
        ones also carry `_no_weight_decay = True`; loading a checkpoint replaces the tensors and drops it.)"""
        return [
            name
            for name, _ in self.named_parameters()
            if ".ssm_layer.kernel." in name or name.endswith(".ssm_layer.D")
        ]

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs: decoder_start_token_id followed by labels[:-1], with -100 replaced by padding."""
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[..., 1:] = labels[..., :-1]
        return shifted.masked_fill_(shifted == -100, self.config.pad_token_id)


class LocostForConditionalGeneration(LocostPreTrainedModel, GenerationMixin):
    """LOCOST encoder-decoder with a language-modelling head (tied to the embeddings by default, with
    T5's d_model**-0.5 output scaling when tied)."""

    _tied_weights_keys = {"lm_head.weight": "shared.weight"}

    def __init__(self, config: LocostConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = LocostEncoder(config, self.shared)
        self.decoder = LocostDecoder(config, self.shared)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, embeddings):
        self.shared = embeddings
        self.encoder.set_input_embeddings(embeddings)
        self.decoder.set_input_embeddings(embeddings)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, embeddings):
        self.lm_head = embeddings

    def get_encoder(self, *args, **kwargs):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    def _logits_and_loss(self, hidden: torch.Tensor, labels: torch.Tensor | None):
        """LM-head logits (B, T, vocab) of the decoder output, with T5's d_model**-0.5 scaling when the
        head is tied, and the cross-entropy against `labels` (-100 ignored; None without labels)."""
        if self.config.tie_word_embeddings:
            hidden = hidden * self.config.d_model**-0.5
        logits = self.lm_head(hidden)
        if labels is None:
            return logits, None
        loss = F.cross_entropy(
            logits.to(torch.promote_types(logits.dtype, torch.float32)).flatten(0, 1),
            labels.flatten().to(logits.device),
            ignore_index=-100,
        )
        return logits, loss

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor):
        return self._shift_right(labels)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        past_key_values=None,
    ):
        """Labels -> cross-entropy loss (-100 ignored); decoder inputs default to labels shifted right.
        The KV cache is used by default only without labels (training keeps no copies of K/V).

        `cache` (an `EncoderDecoderCache`) is the decoder cache; `past_key_values` is its name before
        transformers 5.24, accepted while releases before it are supported (`models/compat.py`). The
        output carries the cache under the installed release's name. Unknown keywords raise TypeError."""
        cache = pick_cache(cache, past_key_values)
        _refuse_attention_weights(output_attentions)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids, attention_mask, inputs_embeds, output_hidden_states=output_hidden_states
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._shift_right(labels)
        if use_cache is None:
            use_cache = self.config.use_cache and labels is None
        decoder_outputs = self.decoder(
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs.last_hidden_state,
            attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        logits, loss = self._logits_and_loss(decoder_outputs.last_hidden_state, labels)
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            decoder_hidden_states=decoder_outputs.hidden_states,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            **cache_field(output_cache(decoder_outputs)),
        )
        return output if return_dict is not False else output.to_tuple()
