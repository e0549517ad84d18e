"""The `--precision` and `--engine` names, written once for the library configs and the CLI options.

Kept free of torch so the click options can list them without `headstart --help` importing torch; what each name
means on a device is decided in `headstart.device.autocast_dtype`, which engine runs in
`headstart.engines.choose_engine`.
"""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: autocast on CUDA (per command), fp32 on CPU
HEAD_PRECISIONS = ("auto", "fp32", "bf16")  # `headstart heads`: auto = bf16 where native; fp16 needs a GradScaler
ENGINES = ("auto", "torch", "onnxruntime")  # auto: onnxruntime on the CPU when installed, torch on CUDA
