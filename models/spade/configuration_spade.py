"""Configuration of SPADE (Zuo et al., 2022, arXiv 2212.08136): a LongT5-local encoder-decoder whose first
encoder layer adds a global bidirectional S4 branch beside its local attention."""

from transformers import LongT5Config

__all__ = ["SpadeConfig", "PRESETS"]

# Config kwargs per size. `base`: T5-base dimensions (768 / 3072 / 12 heads / 12 + 12 layers), as published.
PRESETS = {
    "tiny": dict(d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2, d_state=16),
    "small": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=8, num_layers=6, num_decoder_layers=6),
    "base": dict(d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
}


class SpadeConfig(LongT5Config):
    r"""SPADE hyper-parameters: every `LongT5Config` field (the encoder attention is always `"local"`, with
    `local_radius` tokens on each side, 128 as in SPADE), plus the S4 branch of encoder layer 0:

    `d_state`: S4 state size N (N/2 stored conjugate-pair modes; 64 in SPADE).
    `dt_min`, `dt_max`: range of the log-uniform initial step size Δ ([0.001, 0.1] in SPADE).
    `freeze_ssm_A_B`: keep the S4 state matrix (Λ, P) and B fixed, as SPADE's fine-tuning configuration does.
    `ssm_chunk_channels`: channels per chunk of the S4 branch under `torch.no_grad()` (None = automatic,
    bounding the transient FFT buffers to ~256 MB).
    """

    model_type = "spade"

    local_radius: int = 128
    feed_forward_proj: str = "gated-gelu"
    d_state: int = 64
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    freeze_ssm_A_B: bool = True
    ssm_chunk_channels: int | None = None
    decoder_start_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.encoder_attention_type != "local":
            raise ValueError(f"SPADE's encoder attention is local, got {self.encoder_attention_type!r}")
        if self.d_state % 2:
            raise ValueError(f"d_state must be even (N/2 conjugate pairs), got {self.d_state}")
        super().__post_init__(**kwargs)
