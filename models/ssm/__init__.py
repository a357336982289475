"""State-space-model kernels shared by the families (S4 with its NPLR state matrix, used by SPADE and
LOCOST's ``ssm_kernel="s4"``)."""
