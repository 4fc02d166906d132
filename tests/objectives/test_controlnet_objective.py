"""ControlNet losses: hints survive packing exactly; with a network that ignores the hint
the hinted loss is the base loss; the recon loss against closed forms."""

from __future__ import annotations

import torch

from diffkit.data.loader import to_unit_range
from diffkit.objectives.controlnet import (
    HintedObjective,
    ReconObjective,
    pack_hints,
    unpack_hints,
)
from diffkit.objectives.ddpm import DDPMObjective
from diffkit.objectives.flow import FlowObjective
from diffkit.schedules import make_schedule


def test_pixel_and_latent_rows_unpack_to_what_was_packed():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    hints = torch.rand(5, 1, 28, 28).round()  # a Canny map: 0 or 1
    x, h = unpack_hints(to_unit_range(pack_hints(images, hints)), (1, 28, 28), (1, 28, 28))
    assert torch.equal(x, to_unit_range(images)) and torch.equal(h, hints)
    soft = torch.rand(5, 1, 28, 28)  # a Sobel map: quantised to 1/255 in uint8 rows
    _, h = unpack_hints(to_unit_range(pack_hints(images, soft)), (1, 28, 28), (1, 28, 28))
    assert (h - soft).abs().max() <= 0.5 / 255 + 1e-6
    latents = torch.randn(5, 4, 7, 7)
    x, h = unpack_hints(pack_hints(latents, soft), (4, 7, 7), (1, 28, 28))
    assert torch.equal(x, latents) and torch.allclose(h, soft, atol=1e-6)


def test_a_network_that_ignores_the_hint_trains_the_base_loss():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    rows = to_unit_range(pack_hints(images, torch.rand(4, 1, 28, 28).round()))
    labels = torch.tensor([1, 2, 3, 4])
    for base in (DDPMObjective(make_schedule("linear", 1000), "v", 5.0, 10, 0.5),
                 FlowObjective("logit_normal", num_classes=10, cond_drop=0.5)):  # fmt: skip
        hinted = HintedObjective(base, (1, 28, 28), (1, 28, 28))
        a = hinted(lambda x, t, c, h: conv(x), rows, labels, torch.Generator().manual_seed(3))
        b = base(lambda x, t, c: conv(x), to_unit_range(images), labels,
                 torch.Generator().manual_seed(3))  # fmt: skip
        assert torch.equal(a, b)


def test_recon_fits_the_data_estimate_at_a_blank_input():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    rows = to_unit_range(pack_hints(images, torch.zeros(3, 1, 28, 28)))
    x0 = to_unit_range(images)
    sched = make_schedule("linear", 1000)
    abar = sched.alphas_cumprod[-1]
    seen = {}

    def eps_net(x, t, c, h):  # a constant eps prediction of 0.01
        seen["x"], seen["t"] = x, t
        return torch.full_like(x, 0.01)

    loss = ReconObjective(DDPMObjective(sched), (1, 28, 28), (1, 28, 28))(
        eps_net, rows, None, torch.Generator()
    )
    assert torch.equal(seen["x"], torch.zeros_like(x0)) and (seen["t"] == 999).all()
    estimate = -((1 - abar) / abar).sqrt() * 0.01  # x0 = (x_T - sqrt(1 - abar) eps) / sqrt(abar)
    assert torch.allclose(loss, (estimate - x0).abs().mean(), rtol=1e-5)
    flow = ReconObjective(FlowObjective(), (1, 28, 28), (1, 28, 28))
    loss = flow(lambda x, t, c, h: torch.full_like(x, 0.3), rows, None, torch.Generator())
    assert torch.allclose(loss, (0.3 - x0).abs().mean())  # one Euler step from 0: v itself
