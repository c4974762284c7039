"""Device and numeric precision: chosen once, then used through one autocast context."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple's MPS, then the CPU, unless a device is named."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"--device {requested} was asked for, but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"--device {requested} was asked for, but MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX).

    Without it, oneDNN emulates bf16 and autocast makes training many times slower, not faster.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(device: torch.device, requested: str = "auto") -> str:
    """The autocast precision: bf16 where the device runs it natively, else fp32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("fp16 autocast is for GPUs; use bf16 or fp32 on the CPU")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    """The one place mixed precision is switched on: a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler for fp16, whose small range underflows gradients; disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def configure_backends(device: torch.device) -> None:
    """Fast kernels on CUDA: cuDNN picks the best convolution for the fixed input size, and fp32
    matrix products use TF32 tensor cores (the losses stay in full fp32 outside autocast)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
