"""Configuration of LOCOST (Le Bronnec et al., 2024): a state-space-model encoder and a T5-style decoder."""

from transformers import PretrainedConfig

__all__ = ["LocostConfig", "PRESETS"]

# Config kwargs per size. `base` is the released checkpoint's shape (~235M parameters, tied embeddings).
PRESETS = {
    "tiny": dict(d_model=64, d_state=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16),
    "small": dict(
        d_model=512, d_state=256, d_ff=1024, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64
    ),
    "base": dict(
        d_model=768, d_state=512, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64
    ),
}


CROSS_ATTENTION = ("cached", "absorbed")


class LocostConfig(PretrainedConfig):
    r"""LOCOST hyper-parameters.

    Encoder: `num_layers` pre-norm blocks of a gated bidirectional S4D layer (`d_state` real state
    dimensions, i.e. `d_state // 2` complex modes per channel) and a gated-GELU FFN (`d_ff`).
    Decoder: `num_decoder_layers` T5 blocks (`num_heads` heads of size `d_kv`, relative position bias).
    `gating=False` drops the multiplicative gate; `bidirectional=False` keeps only the causal kernel.
    `ssm_kernel`: "s4d" (diagonal, zero-order hold, as released) or "s4" (S4's normal-plus-low-rank
    HiPPO-LegS state matrix with bilinear discretisation, kernel by real matrix powers, `models/ssm/s4.py`).
    `ssm_chunk_channels`: channels per chunk of the SSM under `torch.no_grad()` (None = automatic,
    bounding the transient FFT buffers to ~256 MB).
    `reuse_kernel`: in eval mode without gradients, keep each layer's S4D kernel (c * d_model * L floats,
    up to 64 MiB per layer) and reuse it for every call at that length or shorter until a parameter
    changes; off by default, so that measurements build the kernel in every call unless asked.
    `cross_attention`: "cached" (T5's way: each decoder layer projects the encoder output to K/V once
    and caches them, 2 x d_model floats per input token and layer) or "absorbed" (no K/V: the key
    projection is absorbed into the query and the value projection follows the weighted sum, so a
    generation step reads the encoder output itself; d_model / d_kv times the FLOPs per step).
    `use_fast_fft_conv`: compute the convolution the released LOCOST code computes with its option of
    that name (on in the released configurations, so the released weights were trained with it):
    `ssm.released_fast_conv`, whose backward kernel is shifted or lost at lengths that are not powers
    of two (odd lengths padded by one zero input row, as there). False (default): the exact
    bidirectional convolution of the paper, which the released code's reference path computes.
    `num_hidden_layers` reads `num_decoder_layers`: the decoder is the only stack with a KV cache.
    """

    model_type = "locost"
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_decoder_layers",
        "head_dim": "d_kv",
    }

    vocab_size: int = 32100
    d_model: int = 768
    d_state: int = 512
    d_ff: int = 2048
    num_layers: int = 12
    num_decoder_layers: int | None = None
    num_heads: int = 12
    d_kv: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    bidirectional: bool = True
    gating: bool = True
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_chunk_channels: int | None = None
    ssm_kernel: str = "s4d"
    reuse_kernel: bool = False
    use_fast_fft_conv: bool = False
    cross_attention: str = "cached"
    is_encoder_decoder: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 1
    decoder_start_token_id: int | None = 0
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.cross_attention not in CROSS_ATTENTION:
            raise ValueError(
                f"cross_attention must be one of {CROSS_ATTENTION}, got {self.cross_attention!r}"
            )
        if self.d_state % 2:
            raise ValueError(f"d_state must be even (N/2 complex modes), got {self.d_state}")
        if self.ssm_kernel not in ("s4d", "s4"):
            raise ValueError(f"ssm_kernel must be 's4d' or 's4', got {self.ssm_kernel!r}")
        super().__post_init__(**kwargs)
