"""A small CNN classifier that doubles as the offline feature network for FID / KID / IS."""

from __future__ import annotations

from torch import Tensor, nn

from diffkit.config.model import ClassifierNetConfig


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class FeatureClassifier(nn.Module):
    """x: (B, C, H, W) in [-1, 1] -> logits (B, K); :meth:`features_and_logits` also returns
    the ``feature_dim`` embedding (after BatchNorm, before the ReLU) used by the metrics."""

    def __init__(self, cfg: ClassifierNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cfg.in_channels
        for w in cfg.widths:
            layers += [*_conv_bn(c, w), *_conv_bn(w, w), nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.widths)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(c * side * side, cfg.feature_dim, bias=False),
            nn.BatchNorm1d(cfg.feature_dim),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, cfg.num_classes)
        )

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.embed(self.body(x))  # (B, feature_dim)
        return f, self.head(f)

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        return self.features_and_logits(x)[1]
