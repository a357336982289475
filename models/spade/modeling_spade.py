"""SPADE (arXiv 2212.08136, as its authors fine-tuned it for summarisation) as a Hugging Face seq2seq model.

SPADE is LongT5 with local encoder attention whose first encoder layer also runs a global S4 branch:
    x = RMSNorm(h)
    a = LocalAttention(x)                                  (transformers' LongT5 local attention, radius r)
    s = GLU(W_s GELU(K_bi * x + D x) + b_s)                (bidirectional S4, models/ssm/s4.py; W_s: d -> 2d)
    h = h + Dropout(W_o [RMSNorm_a(a), RMSNorm_s(s)])      (W_o: 2d -> d, no bias)
then the feed-forward sublayer. Layers 1..n-1 are LongT5 local-attention layers; the decoder is LongT5's
(T5: causal self-attention with relative position bias, cross-attention, gated-GELU FFN). Everything but
the S4 branch and its mixing is transformers' own LongT5 code, so the decoder cache, masks and position
biases follow the installed release.
"""


import torch
import torch.nn.functional as F
from torch import nn
from transformers import LongT5ForConditionalGeneration
from transformers import initialization as init
from transformers.models.longt5.modeling_longt5 import LongT5LayerLocalSelfAttention, LongT5LayerNorm

from ..compat import CACHE_NAME, pick_cache
from ..precision import KeepsFloat32
from ..ssm.fftconv import compute_dtype, fast_fft_size, fft_conv
from ..ssm.flops import fft_conv_flops, kernel_flops, ssm_fft_size
from ..ssm.s4 import S4Kernel
from .configuration_spade import SpadeConfig

__all__ = ["SpadeForConditionalGeneration", "SpadeS4", "SpadeLayerLocalAndS4"]

# Under no_grad: complex spectrum elements per S4 channel chunk (B * channels * n, ~256 MB in complex64).
S4_CHUNK_ELEMENTS = 2**25


class SpadeS4(KeepsFloat32, nn.Module):
    """Bidirectional S4 on x (B, L, H): y = GLU(W_s GELU(K_bi * x + D x) + b_s) (B, L, H), x zero at padding.

    The kernel (NPLR HiPPO-LegS, c = 2 output vectors), D and the convolution run in float32 (float64
    for float64 inputs) and keep float32 parameters under half-precision casts.
    """

    def __init__(self, config: SpadeConfig):
        super().__init__()
        H = config.d_model
        self.kernel = S4Kernel(H, config.d_state, 2, config.dt_min, config.dt_max, config.freeze_ssm_A_B)
        self.D = nn.Parameter(torch.empty(H))
        self.D._no_weight_decay = True
        self.output_linear = nn.Linear(H, 2 * H)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.chunk_channels = config.ssm_chunk_channels

    def float32_parameter_names(self) -> list[str]:
        return ["D", *(f"kernel.{name}" for name, _ in self.kernel.named_parameters())]

    def _conv(self, x: torch.Tensor, channels: slice) -> torch.Tensor:
        """K_bi * x + D x on x's `channels`, in float32 (float64)."""
        dtype = compute_dtype(x, self.D)
        u = x[..., channels]
        return fft_conv(u, self.kernel(x.shape[1], channels, dtype)) + self.D[channels].to(dtype) * u

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        if token_mask is not None:
            x = x * token_mask[..., None].to(x.dtype)
        if torch.is_grad_enabled():
            y = self._conv(x, slice(None)).to(x.dtype)
        else:
            B, L, H = x.shape
            size = self.chunk_channels or max(1, S4_CHUNK_ELEMENTS // (B * fast_fft_size(2 * L)))
            y = torch.empty_like(x)
            for start in range(0, H, size):
                channels = slice(start, start + size)
                y[..., channels] = self._conv(x, channels)
        return F.glu(self.output_linear(self.dropout(F.gelu(y))), dim=-1)


def _token_mask(local_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """(B, L) token mask from LongT5's local-attention mask (B, 1, blocks, block_len, 3 block_len): a
    position attends to itself (key index block_len + t of its block's row t) exactly when it is a token."""
    if local_mask is None:
        return None
    block_len = local_mask.shape[-2]
    t = torch.arange(block_len, device=local_mask.device)
    return local_mask[:, 0, :, t, block_len + t].flatten(1)[:, :length]


class SpadeLayerLocalAndS4(LongT5LayerLocalSelfAttention):
    """Encoder layer 0's mixing sublayer: h + Dropout(W_o [RMSNorm(local attention), RMSNorm(S4)]) on the
    normed input. Called by transformers' `LongT5Block` like the local-attention layer it replaces (which
    also receives, and has no use for, the decoder-cache keywords)."""

    def __init__(self, config: SpadeConfig):
        super().__init__(config, has_relative_attention_bias=True)
        self.s4 = SpadeS4(config)
        self.attention_norm = LongT5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.s4_norm = LongT5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mix = nn.Linear(2 * config.d_model, config.d_model, bias=False)

    def forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **_):
        normed = self.layer_norm(hidden_states)
        attention = self.LocalSelfAttention(
            normed, mask=attention_mask, position_bias=position_bias, output_attentions=output_attentions
        )
        s4 = self.s4(normed, _token_mask(attention_mask, hidden_states.shape[1]))
        mixed = self.mix(torch.cat([self.attention_norm(attention[0]), self.s4_norm(s4)], dim=-1))
        return (hidden_states + self.dropout(mixed),) + attention[1:]


def analytic_flop_hooks(model: nn.Module, add) -> list:
    """Forward hooks on every ``SpadeS4`` of ``model`` calling ``add(flops)`` with what fvcore cannot see
    (its FFT convolution and the S4 kernel's terms, ``models.ssm.flops``)."""

    def on_s4(module, args, output):
        B, L, H = (int(s) for s in args[0].shape)  # 0-d tensors under the jit trace
        add(fft_conv_flops(B, L, H, ssm_fft_size(L)) + kernel_flops(module.kernel, H, L))

    return [m.register_forward_hook(on_s4) for m in model.modules() if isinstance(m, SpadeS4)]


class SpadeForConditionalGeneration(LongT5ForConditionalGeneration):
    """SPADE encoder-decoder with a language-modelling head (LongT5's, tied to the embeddings)."""

    config_class = SpadeConfig
    config: SpadeConfig
    base_model_prefix = "spade"
    _keep_in_fp32_modules_strict = ["s4.kernel", "s4.D"]

    def __init__(self, config: SpadeConfig):
        super().__init__(config)
        layer = SpadeLayerLocalAndS4(config)
        self.encoder.block[0].layer[0] = layer
        # the encoder stack is a PreTrainedModel of its own, which post_init initialises with LongT5's
        # `_init_weights` and marks as done: the replaced layer is initialised here, children first as
        # in post_init (a parent's rule wins over the generic nn.Linear one)
        for module in reversed(list(layer.modules())):
            self._init_weights(module)

    @torch.no_grad()
    def _init_weights(self, module):
        """LongT5's initialisation, plus HiPPO-LegS for the S4 kernel and T5-style normals for the branch."""
        super()._init_weights(module)
        factor, d_model = self.config.initializer_factor, self.config.d_model
        if isinstance(module, S4Kernel):
            module.reset_parameters()
        elif isinstance(module, SpadeS4):
            init.normal_(module.D, mean=0.0, std=1.0)
            init.normal_(module.output_linear.weight, mean=0.0, std=factor * d_model**-0.5)
            init.zeros_(module.output_linear.bias)
        elif isinstance(module, SpadeLayerLocalAndS4):
            init.normal_(module.mix.weight, mean=0.0, std=factor * (2 * d_model) ** -0.5)

    def no_weight_decay_parameter_names(self) -> list[str]:
        """The S4 kernel's parameters and D, which optimizers should exclude from weight decay."""
        names = [name for name, _ in self.named_parameters()]
        return [name for name in names if ".s4.kernel." in name or name.endswith(".s4.D")]

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        past_key_values=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
    ):
        """LongT5's forward; the decoder cache may come as `cache` (transformers >= 5.24) or
        `past_key_values` (older), and goes on under the installed release's name. Labels -> loss."""
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            **{CACHE_NAME: pick_cache(cache, past_key_values)},
        )
