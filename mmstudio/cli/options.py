"""Help texts of the flags that several commands share."""

DEVICE_HELP = "auto: cuda, then mps, then cpu (the default, or $MMSTUDIO_DEVICE); or cpu, cuda, cuda:N, mps"
DTYPE_HELP = "fp32 (the default, or $MMSTUDIO_DTYPE), fp16 or bf16"
