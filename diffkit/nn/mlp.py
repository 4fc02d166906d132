"""A residual MLP denoiser for flat latents (B, D), time- and optionally class-conditioned."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from diffkit.config.model import MLPConfig
from diffkit.nn.conditioning import ClassConditioner, null_labels
from diffkit.nn.layers import TimeEmbedding, zero_init


class _MLPBlock(nn.Module):
    """LayerNorm, scale-shift by the embedding, SiLU-Linear-SiLU-Linear, residual.
    x: (B, H), emb: (B, E) -> (B, H)."""

    def __init__(self, hidden: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.emb = nn.Linear(emb_dim, 2 * hidden)
        self.fc1 = nn.Linear(hidden, 2 * hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = zero_init(nn.Linear(2 * hidden, hidden))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.emb(F.silu(emb)).chunk(2, dim=1)
        h = self.norm(x) * (1 + scale) + shift
        h = self.fc2(self.dropout(F.silu(self.fc1(F.silu(h)))))
        return x + h


class MLPDenoiser(nn.Module):
    """``forward(x: (B, D), t: (B,), cond: (B,) labels or None) -> (B, D)``.

    Class labels (``num_classes`` = null) are embedded (one-hot -> MLP) and added to the
    time embedding, the route CS180's flow-matching UNets use.
    """

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.time_embed = TimeEmbedding(cfg.emb_dim, cfg.emb_dim)
        self.conditioner = (
            ClassConditioner(cfg.num_classes, ("time",), emb_dim=cfg.emb_dim, image_size=1,
                             context_dim=1, tokens=1)
            if cfg.num_classes
            else None
        )  # fmt: skip
        self.proj_in = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(
            _MLPBlock(cfg.hidden, cfg.emb_dim, cfg.dropout) for _ in range(cfg.depth)
        )
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.proj_out = zero_init(nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.time_embed(t)  # (B, E)
        if self.conditioner is not None:
            labels = null_labels(cond, x.shape[0], self.cfg.num_classes, x.device)
            emb = emb + self.conditioner(labels).time
        h = self.proj_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.proj_out(F.silu(self.norm_out(h)))
