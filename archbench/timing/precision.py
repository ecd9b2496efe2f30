"""Which fp32 work runs as TF32 on a GPU, read so that it never raises.

On Ampere and newer GPUs, "fp32" convolutions follow cuDNN's TF32 switch (on by default) while fp32
matrix multiplies follow cuBLAS's (off by default), so an "fp32" cell may run most of its FLOPs in TF32.
torch 2.9+ has a new API (``fp32_precision = "ieee" | "tf32" | "none"``, ``none`` inheriting from the
parent backend); once it has been used, reading the legacy ``allow_tf32`` flags or
``get_float32_matmul_precision()`` raises "mix of the legacy and new APIs". So read the new attributes
where they exist and the legacy ones only on an older torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tf32Settings:
    """Whether fp32 matrix multiplies (cuBLAS) and convolutions (cuDNN) run as TF32 on a capable GPU."""

    matmul: bool
    conv: bool

    @property
    def any(self) -> bool:
        return self.matmul or self.conv


def tf32_settings() -> Tf32Settings:
    import torch

    backends = torch.backends
    conv_backend = getattr(backends.cudnn, "conv", None)
    if hasattr(backends.cuda.matmul, "fp32_precision") and hasattr(conv_backend, "fp32_precision"):
        return Tf32Settings(
            matmul=resolve(backends.cuda.matmul.fp32_precision, getattr(backends, "fp32_precision", "none")) == "tf32",
            conv=resolve(conv_backend.fp32_precision, backends.cudnn.fp32_precision,
                         getattr(backends, "fp32_precision", "none")) == "tf32",
        )
    return Tf32Settings(matmul=bool(backends.cuda.matmul.allow_tf32), conv=bool(backends.cudnn.allow_tf32))


def resolve(*levels: str) -> str:
    """The first setting that is not ``none``, from the most specific backend up; IEEE fp32 otherwise."""
    return next((str(level) for level in levels if str(level) != "none"), "ieee")


def runs_as_tf32(device: str, dtype: str, tf32: Tf32Settings) -> bool:
    """Whether fp32 work on ``device`` runs (partly) as TF32."""
    return dtype == "fp32" and str(device).startswith("cuda") and tf32.any


def dtype_label(device: str, dtype: str, tf32: Tf32Settings) -> str:
    """``fp32 (tf32)`` for fp32 work on a GPU that runs part of it as TF32; the dtype otherwise."""
    return "fp32 (tf32)" if runs_as_tf32(device, dtype, tf32) else dtype


CUDNN_BENCHMARK = True  # cuDNN autotuning is on for CUDA cells (the warm-up absorbs the tuning)
