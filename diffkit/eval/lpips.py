"""LPIPS (Zhang et al. 2018): a learned perceptual distance between two images, through the
``lpips`` package (the optional ``diffkit[lpips]`` extra).

Two uses, both in ``diffkit eval``: the **diversity** of a set of images (the mean distance
over random disjoint pairs; higher is more varied; a latent-diffusion course report lists it next to
FID and IS) and the **reconstruction distance** of an autoencoder (image vs its
reconstruction; lower is closer).

The package ships the calibrated linear layers (a few KB); the backbone is torchvision's
ImageNet AlexNet or VGG16, which the package would download. diffkit never downloads: the
backbone is built randomly initialised and its weights are read from a local file
(``--lpips-weights``, ``DIFFKIT_LPIPS_WEIGHTS`` or torch hub's cache, as torchvision names
it), refused unless it is a plain state dict of exactly the backbone's tensors.

Images smaller than 64 pixels are upsampled (bilinear) to 64 first: AlexNet's stride-4 stem
and three max-pools leave no pixel of a 28x28 digit by the third layer. Distances measured
at another size are not comparable, so the size is part of :meth:`LPIPS.about`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffkit.errors import CheckpointError, ConfigError, DependencyError

LPIPSNet = Literal["alex", "vgg"]
# torchvision's file names for the ImageNet backbones (what torch.hub would have saved)
BACKBONE_FILES: dict[str, str] = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
INSTALL = "pip install 'diffkit[lpips]' (or pip install lpips)"
MIN_SIZE = 64  # smallest side the backbone sees
BATCH = 100


def default_weights_path(net: LPIPSNet) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


@dataclass
class LPIPS:
    """A loaded LPIPS network (eval mode, frozen) and where its backbone came from."""

    module: nn.Module  # lpips.LPIPS
    net: LPIPSNet
    path: Path | None  # the backbone file; None: the random backbone of a test
    digest: str
    device: torch.device

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """Distances (B,) of one batch, differentiable in ``a`` and ``b`` (as a loss; the
        network's own parameters are frozen), prepared as :meth:`distance` prepares them."""
        x, y = _prepared(a, self.device), _prepared(b, self.device)  # (B, 3, >=64, >=64)
        return self.module(x, y).flatten()  # (B, 1, 1, 1): each layer's spatial mean, summed

    @torch.no_grad()
    def distance(self, a: Tensor, b: Tensor, batch_size: int = BATCH) -> Tensor:
        """Per-pair distances (N,) of images ``a`` and ``b`` (N, C, H, W): uint8, or float
        in [-1, 1]; gray images are repeated to three channels."""
        if a.shape != b.shape:
            raise ConfigError(f"LPIPS compares images of one shape, got {tuple(a.shape)} "
                              f"and {tuple(b.shape)}")  # fmt: skip
        out = [torch.zeros(0)]
        for start in range(0, a.shape[0], batch_size):
            d = self(a[start : start + batch_size], b[start : start + batch_size])
            out.append(d.float().cpu())
        return torch.cat(out)

    def diversity(self, images: Tensor, pairs: int = 1000, seed: int = 0) -> dict[str, float]:
        """Mean and std of the distance over ``pairs`` random disjoint pairs (at most N // 2)
        of ``images``, drawn with ``seed``."""
        n = images.shape[0]
        k = min(pairs, n // 2)
        if k < 1:
            raise ConfigError(f"LPIPS diversity needs at least 2 images, got {n}")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=g)[: 2 * k]
        d = self.distance(images[perm[:k]], images[perm[k:]])
        return {"mean": float(d.mean()), "std": float(d.std()) if k > 1 else 0.0, "pairs": k}

    def about(self) -> dict[str, Any]:
        return {"kind": f"lpips-{self.net}", "path": None if self.path is None else str(self.path),
                "sha256": self.digest, "min_size": MIN_SIZE, "version": "0.1"}  # fmt: skip


def _prepared(x: Tensor, device: torch.device) -> Tensor:
    """(B, C, H, W) uint8 or [-1, 1] float -> float (B, 3, >=64, >=64) in [-1, 1]."""
    x = x.to(device)
    x = x.float().div(127.5).sub(1) if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # (B, 1, H, W) -> (B, 3, H, W)
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIZE:
        scale = MIN_SIZE / min(h, w)
        size = (max(MIN_SIZE, math.ceil(h * scale)), max(MIN_SIZE, math.ceil(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def _lpips_package() -> Any:
    try:
        import lpips
    except ImportError:
        raise DependencyError(f"LPIPS needs the lpips package: {INSTALL}") from None
    return lpips


def build_lpips(net: LPIPSNet = "alex") -> nn.Module:
    """The package's LPIPS v0.1 with its calibrated linear layers and a *random* backbone
    (nothing downloaded); :func:`load_lpips` fills the backbone in."""
    import warnings

    lpips = _lpips_package()
    with warnings.catch_warnings():  # torchvision's note on the legacy pretrained=False
        warnings.simplefilter("ignore")
        module = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    return module.eval().requires_grad_(False)


def backbone_keys(module: nn.Module) -> dict[str, str]:
    """torchvision's key (``features.3.weight``) -> the package's (``slice2.3.weight``):
    the package splits ``features`` into slices but keeps each layer's index as its name."""
    return {f"features.{k.split('.', 1)[1]}": k for k in module.net.state_dict()}


def load_lpips(
    net: LPIPSNet = "alex", weights: Path | None = None, device: torch.device | str = "cpu"
) -> LPIPS:
    """LPIPS with the ImageNet backbone read from a local torchvision file. A missing file
    or package, or a file that is not exactly the backbone, is one line (exit 2)."""
    from diffkit.eval.features import read_state_dict
    from diffkit.runs.checkpoint import load_state

    if net not in BACKBONE_FILES:
        raise ConfigError(f"unknown LPIPS network {net!r}; use alex or vgg")
    path = Path(weights) if weights is not None else default_weights_path(net)
    if not path.is_file():
        raise ConfigError(
            f"LPIPS needs torchvision's {BACKBONE_FILES[net]} (the {net} backbone) at {path}; "
            "diffkit never downloads it: copy it there, or point --lpips-weights / "
            "DIFFKIT_LPIPS_WEIGHTS at it"
        )
    module = build_lpips(net)
    what = f"LPIPS {net} backbone"
    state = read_state_dict(path, what)
    keys = backbone_keys(module)
    # torchvision's classifier head (and nothing else) is not part of LPIPS's backbone
    ours = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if set(ours) != set(keys):
        missing = sorted(set(keys) - set(ours))[:3]
        raise CheckpointError(f"{path} does not hold torchvision's {net} backbone "
                              f"(missing {', '.join(missing) or 'nothing'}; "
                              f"{len(set(ours) - set(keys))} unexpected tensors)")  # fmt: skip
    renamed = {keys[k]: v for k, v in ours.items()}  # right names; the shapes may be wrong
    load_state(module.net, renamed, path, f"tensor shapes do not match the {net} backbone")
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    device = torch.device(device)
    return LPIPS(module.to(device), net, path, digest, device)
