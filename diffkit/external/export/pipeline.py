"""``pipeline_diffkit.py``: the diffusers pipeline of a model exported by ``diffkit export``.

Copied as it is into an export whose model diffusers' own ``DDPMPipeline`` cannot sample:
a class-conditional model (classifier-free guidance), a latent model (its VAE decodes) or
a rectified flow (diffusers' flow-matching scheduler). It imports torch and diffusers
only, never diffkit. Any scheduler whose ``step`` takes the model output, the timestep and
the sample works; the exported one is a ``DDPMScheduler`` for a DDPM and a
``FlowMatchEulerDiscreteScheduler`` for a flow, and ``DDIMScheduler.from_config`` (or any
other discrete one) can replace the first.

diffkit's conventions, kept here so that the samples match diffkit's own sampler:

* a flow is integrated on diffkit's uniform grid, sigma = 1, 1 - 1/S, ..., 1/S, then 0;
* DDIM re-derives eps from the clipped x0 (``use_clipped_model_output``), as diffkit's
  DDIM does;
* guidance is ``u + w (c - u)`` on the network's raw output, the conditional and the
  null-class halves in one batch.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor


class DiffkitPipeline(DiffusionPipeline):
    """``unet`` (a DiffkitUNet), ``scheduler``, and for a latent model ``vae`` (a DiffkitVAE).

    ``pipe(batch_size, class_labels=..., guidance_scale=..., num_inference_steps=...,
    generator=...)``: ``class_labels`` (an int, or one per image; None: the null class,
    i.e. unconditional samples) for a class-conditional model, ``guidance_scale`` w the
    classifier-free guidance scale (1: the plain conditional model). ``num_inference_steps``
    defaults to the model's (``unet.config.diffkit["default_steps"]``).
    """

    model_cpu_offload_seq = "unet->vae"
    _optional_components: ClassVar[list[str]] = ["vae"]

    def __init__(self, unet: Any, scheduler: Any, vae: Any = None) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int | None = None,
        class_labels: int | list[int] | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Images in [0, 1]: PIL images (``output_type="pil"``), an (N, H, W, C) array
        ("np") or an (N, C, H, W) tensor ("pt"). ``latents`` (N, *sample_shape) replaces
        the initial noise; ``eta`` is read by schedulers that take it (DDIM)."""
        device = self._execution_device
        labels, n = self._labels(class_labels, batch_size, guidance_scale, device)
        shape = (n, *self.unet.config.sample_shape)
        x = latents.to(device) if latents is not None else randn_tensor(
            shape, generator=generator, device=device, dtype=self.unet.dtype)  # fmt: skip
        x = x * getattr(self.scheduler, "init_noise_sigma", 1.0)
        self._set_timesteps(num_inference_steps, device)
        extra = self._step_kwargs(generator, eta)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_in = self.scheduler.scale_model_input(x, t) if hasattr(
                self.scheduler, "scale_model_input") else x  # fmt: skip
            out = self._guided(model_in, t, labels, guidance_scale)
            x = self.scheduler.step(out, t, x, **extra).prev_sample
        images = self.vae.decode(x.to(self.vae.dtype)).sample if self.vae is not None else x
        images = (images.float() / 2 + 0.5).clamp(0, 1)  # [-1, 1] -> [0, 1]
        if output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def _labels(
        self, class_labels: Any, batch_size: int | None, guidance: float, device: torch.device
    ) -> tuple[torch.Tensor | None, int]:
        """The labels (N,) on ``device`` (None: unconditional) and the batch size N."""
        k = self.unet.config.num_classes
        if class_labels is None:
            if guidance != 1.0:
                raise ValueError("guidance_scale needs class_labels (the classes to guide to)")
            return None, batch_size or 1
        if k is None:
            raise ValueError("this model is unconditional; it takes no class_labels")
        labels = torch.as_tensor(class_labels, dtype=torch.long).flatten()
        if labels.numel() == 1 and batch_size:
            labels = labels.expand(batch_size)
        if batch_size is not None and labels.numel() != batch_size:
            raise ValueError(f"{labels.numel()} class_labels for batch_size {batch_size}")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"class_labels must lie in 0..{k - 1}")
        return labels.to(device), labels.numel()

    def _set_timesteps(self, steps: int | None, device: torch.device) -> None:
        steps = steps or (self.unet.config.diffkit or {}).get("default_steps") or 50
        sigmas = self.unet.inference_sigmas(steps)  # a flow's: diffkit's uniform grid
        if sigmas is None:
            self.scheduler.set_timesteps(steps, device=device)
        else:
            self.scheduler.set_timesteps(sigmas=sigmas, device=device)

    def _step_kwargs(self, generator: Any, eta: float) -> dict[str, Any]:
        """What this scheduler's ``step`` takes of: the generator (stochastic steps), eta,
        and DDIM's clipped-output switch (on: diffkit's convention)."""
        params = inspect.signature(self.scheduler.step).parameters
        wanted = {"generator": generator, "eta": eta, "use_clipped_model_output": True}
        return {k: v for k, v in wanted.items() if k in params}

    def _guided(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, w: float
    ) -> torch.Tensor:
        """Classifier-free guidance (Ho & Salimans 2022, Eq. 6) on the raw output."""
        if labels is None or w == 1.0:
            return self.unet(x, t, labels).sample
        null = torch.full_like(labels, self.unet.config.num_classes)
        if w == 0.0:
            return self.unet(x, t, null).sample
        both = self.unet(torch.cat([x, x]), t, torch.cat([labels, null])).sample  # (2N, ...)
        cond, uncond = both.chunk(2)
        return uncond + w * (cond - uncond)
