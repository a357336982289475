"""State-space-model pieces shared by the families, each fast path beside its direct reference.

- ``s4d``: the S4D kernel (diagonal complex A, zero-order hold), used by LOCOST (``ssm_kernel="s4d"``).
- ``s4``: the S4 kernel (HiPPO-LegS in normal-plus-low-rank form, bilinear), used by SPADE and
  LOCOST-S4 (LOCOST's ``ssm_kernel="s4"``).
- ``fftconv``: the causal/bidirectional FFT convolution that applies either kernel to a sequence, and
  the released LOCOST code's variant of it (``released_fast_conv``).
- ``flops``: the analytic FLOPs of these pieces that fvcore cannot trace.

The families import these modules; nothing here imports a family.
"""
