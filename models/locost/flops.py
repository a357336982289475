"""Analytic FLOPs of the parts of LOCOST that fvcore cannot see, counted per call of each ``LocostSSM``
layer: its FFT convolution and its S4D kernel's elementwise part, or the S4 kernel's terms with
``ssm_kernel="s4"`` (formulas and conventions in ``models.ssm.flops``).

``bench.flops.count_flops`` adds them to fvcore's count through ``analytic_flop_hooks``, which
``models.families`` attaches to the LOCOST family (``ModelHandle.analytic_flop_hooks``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..ssm.flops import fft_conv_flops, kernel_flops, ssm_fft_size
from .modeling_locost import LocostSSM


def analytic_flop_hooks(model: nn.Module, add: Callable[[float], None]) -> list:
    """Forward hooks on every ``LocostSSM`` of ``model`` that call ``add(flops)`` with each call's
    analytic FLOPs; remove them (``hook.remove()``) when done. No SSM layer: no hooks."""
    def on_ssm(module, args, output):
        # under the jit trace sizes can be 0-d tensors: make them ints so the counts stay plain numbers
        B, L, H = (int(s) for s in args[0].shape)
        add(fft_conv_flops(B, L, H, ssm_fft_size(L)) + kernel_flops(module.kernel, H, L))

    return [m.register_forward_hook(on_ssm) for m in model.modules() if isinstance(m, LocostSSM)]
