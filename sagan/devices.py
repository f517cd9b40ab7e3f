"""Where a run computes and in what precision: ``auto`` resolved for this machine, and a device
that is missing refused with a message naming the flag."""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


class DeviceError(ValueError):
    """A device or precision this machine cannot provide, with a message that says what to use."""


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise DeviceError(f"--device must be {', '.join(DEVICES)}, not {name!r}.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA GPU is available: use --device cpu.")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """bf16 or fp32; ``auto`` picks bf16 where the hardware computes it natively (emulated bf16 is slower)."""
    if name not in PRECISIONS:
        raise DeviceError(f"--precision must be {', '.join(PRECISIONS)}, not {name!r}.")
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return name
