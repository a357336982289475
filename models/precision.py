"""Parameters that must keep float32 values when a model is cast to half precision.

SSM parameters (log Δ, A, B, C, D) set the kernel's decay rates and frequencies: rounded to bfloat16, an
A_im entry 21.99115 becomes 22.0 and log Δ −6.31858 becomes −6.3125, which moves a 1,000-token encoder
output by 7.4% instead of the 0.74% that bf16 activations alone cost. ``nn.Module._apply`` (behind
``.to(dtype)``, ``.half()``, ``.bfloat16()``) converts a parameter before any override could look at
it, so converting back afterwards restores the dtype but not the value; ``KeepsFloat32`` instead keeps
the float32 tensors and moves them (device only) where the cast put their rounded copies.
"""

from __future__ import annotations

import torch
from torch import nn

HALF_DTYPES = (torch.float16, torch.bfloat16)


class KeepsFloat32(nn.Module):
    """Mixin for a module whose direct or nested parameters named by ``float32_parameter_names()`` stay
    float32, bit for bit, through any cast to float16 or bfloat16 (device moves still apply)."""

    def float32_parameter_names(self) -> list[str]:
        raise NotImplementedError

    def _apply(self, fn, recurse=True):
        params = dict(self.named_parameters())
        kept = {name: params[name].data for name in self.float32_parameter_names()
                if params[name].dtype == torch.float32}
        super()._apply(fn, recurse)
        params = dict(self.named_parameters())
        for name, original in kept.items():
            if params[name].dtype in HALF_DTYPES:
                params[name].data = original.to(params[name].device)
        return self
