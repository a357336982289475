"""CUDA's autocast rules on CPU tensors: what a simulated GPU cell runs under (``bench.gpusim``).

A simulated cell computes on tensors that stand for CUDA ones but live on the CPU (fake CPU tensors:
a fake ``cuda`` tensor aborts the process in ``embedding``'s device guard on a CPU-only build, and
autograd needs a CUDA device guard for backward). Their autocast dispatch key is ``AutocastCPU``,
whose op lists differ from ``AutocastCUDA``'s (ATen ``aten/src/ATen/autocast_mode.cpp``, torch 2.x):

- CUDA computes these in float32 when given bf16/fp16 inputs, CPU leaves them in the input dtype:
  ``CUDA_FP32`` (cast the inputs) and ``CUDA_FP32_OUT`` (``fp32_set_opt_dtype``: softmax, log_softmax,
  sum, cumsum ... with ``dtype=float32`` when no dtype is given). Softmax is the one that matters:
  saved for backward, its float32 output is twice the bytes of a bf16 one.
- CUDA computes these in the lower precision, CPU in the input dtype: ``CUDA_LOWER``.
- CPU casts these to float32, CUDA does not touch them: ``CPU_ONLY_FP32`` (the loss's float32 copy of
  the logits, FFTs).

``cuda_autocast_rules()`` registers Python kernels for those ops at the ``AutocastCPU`` key for as long
as the context lasts, so that ``torch.autocast("cpu", dtype)`` applies CUDA's rules; outside it CPU
autocast is untouched. Ops in neither list behave the same on both devices.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch.utils import _pytree as pytree

#: ops CUDA autocast runs in float32 (inputs cast), CPU autocast does not (autocast_mode.cpp, ``fp32``)
CUDA_FP32 = ("exp", "log", "log10", "log2", "log1p", "expm1", "reciprocal", "rsqrt", "pow.Tensor_Scalar",
             "pow.Tensor_Tensor", "pow.Scalar", "softplus", "layer_norm", "group_norm", "acos", "asin",
             "cosh", "sinh", "tan", "erfinv", "logsumexp", "frobenius_norm.dim", "cosine_similarity",
             "dist", "renorm")
#: ops CUDA autocast gives ``dtype=float32`` when their input is lower precision (``fp32_set_opt_dtype``)
CUDA_FP32_OUT = ("softmax.int", "log_softmax.int", "sum", "sum.dim_IntList", "cumsum", "cumprod",
                 "linalg_vector_norm")
#: ops CUDA autocast runs in the lower precision, CPU autocast does not (``lower_precision_fp``)
CUDA_LOWER = ("einsum", "mv", "addmv", "addr", "chain_matmul", "linalg_multi_dot")
#: composite ops CPU autocast casts to float32 as a whole and CUDA autocast leaves alone (they then
#: decompose, and their parts follow CUDA's rules: cross-entropy's log_softmax gives float32 directly)
CPU_ONLY_FP32 = ("cross_entropy_loss", "fft_fft", "fft_ifft", "fft_rfft", "fft_irfft", "fft_fftn",
                 "fft_ifftn", "fft_rfftn", "fft_irfftn", "stft")

_LOWER = (torch.float16, torch.bfloat16)
_KEY = torch._C.DispatchKey.AutocastCPU


def _cast(value, dtype):
    """``value`` with its floating CPU tensors of another floating dtype (float64 excepted) cast."""
    def cast(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype not in (dtype, torch.float64):
            return x.to(dtype)
        return x
    return pytree.tree_map(cast, value)


def _below_autocast(op, args, kwargs):
    with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(_KEY)):
        return op(*args, **kwargs)


def _kernel(op, rule: str):
    """The ``AutocastCPU`` kernel of ``op`` under CUDA's ``rule`` (fp32, fp32_out, lower, none)."""
    def to_fp32(*args, **kwargs):
        return _below_autocast(op, _cast(args, torch.float32), _cast(kwargs, torch.float32))

    names = [a.name for a in op._schema.arguments]
    where = names.index("dtype") if "dtype" in names else None

    def fp32_out(*args, **kwargs):
        given = args[where] if len(args) > where else kwargs.get("dtype")
        if given is None and args[0].dtype in _LOWER:
            if len(args) > where:
                args = (*args[:where], torch.float32, *args[where + 1:])
            else:
                kwargs = {**kwargs, "dtype": torch.float32}
        return _below_autocast(op, args, kwargs)

    def lower(*args, **kwargs):
        dtype = torch.get_autocast_dtype("cpu")
        return _below_autocast(op, _cast(args, dtype), _cast(kwargs, dtype))

    def decompose(*args, **kwargs):  # autocast stays on for the parts
        return op.decompose(*args, **kwargs)

    return {"fp32": to_fp32, "fp32_out": fp32_out, "lower": lower, "none": decompose}[rule]


def _overload(name: str):
    base, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, base), overload or "default")


@contextlib.contextmanager
def cuda_autocast_rules():
    """While open, ``torch.autocast("cpu", dtype)`` follows CUDA's autocast op lists (module docstring)."""
    library = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():  # "Overriding a previously registered kernel": the point here
            warnings.simplefilter("ignore", UserWarning)
            _register(library)
        yield
    finally:
        library._destroy()


def _register(library) -> None:
    for names, rule in ((CUDA_FP32, "fp32"), (CUDA_FP32_OUT, "fp32_out"), (CUDA_LOWER, "lower"),
                        (CPU_ONLY_FP32, "none")):
        for name in names:
            library.impl(name, _kernel(_overload(name), rule), "AutocastCPU")
