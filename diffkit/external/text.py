"""Prompts as text-encoder embeddings, cached on disk per (encoder, prompt).

A text-to-image pipeline's UNet never sees a prompt, only the encoder's hidden states
(B, L, D). DeepFloyd IF's encoder is T5 v1.1 XXL, 4.8 B parameters, larger than the UNet
it conditions; as CS180's project does, diffkit embeds each prompt once and keeps the result:
``CACHE_DIR/embeddings/<encoder key>/<prompt key>.safetensors``. The encoder is loaded only
for a prompt the cache lacks and freed once it has embedded them, so sampling never holds
both (``diffkit edit embed`` fills the cache ahead of time, on a machine that has the
encoder's weights).

The text is prepared as diffusers' IF pipeline prepares it without caption cleaning
(lower case, stripped), tokenized to 77 tokens (padding and truncation), and encoded
with its attention mask.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffkit.models.conditioning import Cond

MAX_TOKENS = 77  # IF's encoder was trained on 77 tokens, though T5 takes longer inputs
ENCODER_FILES = ("text_encoder/config.json", "tokenizer/tokenizer_config.json",
                 "tokenizer/spiece.model", "tokenizer/tokenizer.json")  # fmt: skip


def prepare(prompt: str) -> str:
    """What the tokenizer sees: diffusers' IF text preprocessing without caption cleaning."""
    return prompt.lower().strip()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class PromptEncoder:
    """Embeds prompts with a pipeline folder's tokenizer and text encoder, through the
    on-disk cache. ``errors`` builds the exception for a problem the user must fix (a
    missing encoder, an unreadable cache file is recomputed instead)."""

    def __init__(self, folder: Path, cache_dir: Path, device: torch.device,
                 dtype: torch.dtype, errors: Any) -> None:  # fmt: skip
        self.folder, self.device, self.dtype, self.errors = folder, device, dtype, errors
        parts = [(folder / f).read_bytes() for f in ENCODER_FILES if (folder / f).is_file()]
        if not parts:
            raise errors(f"{folder}: no text encoder or tokenizer config; not a text-to-image "
                         "pipeline")  # fmt: skip
        key = _digest(b"\0".join(parts) + str(MAX_TOKENS).encode())
        self.dir = cache_dir / "embeddings" / key

    def path(self, prompt: str) -> Path:
        return self.dir / f"{_digest(prepare(prompt).encode())}.safetensors"

    def cached(self, prompt: str) -> bool:
        return self.path(prompt).is_file()

    def embed(self, prompts: Sequence[str]) -> Cond:
        """(N, L, D) embeddings in the encoder's dtype and their (N, L) masks, on the CPU,
        one row per prompt; missing ones are computed in one batch and stored."""
        from safetensors.torch import load_file

        unique = list(dict.fromkeys(prompts))
        found: dict[str, dict[str, Tensor]] = {}
        for p in unique:
            with contextlib.suppress(Exception):  # absent or corrupt (SafetensorError): recomputed
                found[p] = load_file(self.path(p))
        missing = [p for p in unique if p not in found]
        if missing:
            found |= self._encode(missing)
        rows = [found[p] for p in prompts]
        return Cond(tokens=torch.cat([r["tokens"] for r in rows]).to(self.dtype),
                    mask=torch.cat([r["mask"] for r in rows]).bool())  # fmt: skip

    def _encode(self, prompts: list[str]) -> dict[str, dict[str, Tensor]]:
        from safetensors.torch import save_file

        tokenizer, encoder = self._load()
        try:
            batch = tokenizer([prepare(p) for p in prompts], padding="max_length",
                              max_length=MAX_TOKENS, truncation=True,
                              add_special_tokens=True, return_tensors="pt")  # fmt: skip
            with torch.no_grad():
                hidden = encoder(
                    batch.input_ids.to(self.device),
                    attention_mask=batch.attention_mask.to(self.device),
                )[0]
        finally:
            del encoder  # freed before the UNet needs the memory
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.dir.mkdir(parents=True, exist_ok=True)
        out = {}
        for i, p in enumerate(prompts):
            row = {
                "tokens": hidden[i : i + 1].cpu().contiguous(),  # (1, L, D)
                "mask": batch.attention_mask[i : i + 1].to(torch.uint8).contiguous(),
            }
            tmp = self.path(p).with_suffix(f".tmp{os.getpid()}")
            save_file(row, str(tmp), metadata={"prompt": prepare(p)})
            tmp.replace(self.path(p))  # whole or not at all
            out[p] = row
        return out

    def _load(self):
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError:
            raise self.errors(
                'transformers is not installed; pip install -e ".[diffusers]"'
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.folder / "tokenizer")
            encoder = T5EncoderModel.from_pretrained(
                self.folder / "text_encoder",
                dtype=self.dtype,
                **weights_variant(self.folder / "text_encoder", self.dtype),
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.errors(f"{self.folder}: cannot load the text encoder ({first}); embed "
                              "the prompts with `diffkit edit embed` where its weights are, "
                              "and copy the embedding cache") from None  # fmt: skip
        return tokenizer, encoder.to(self.device).eval()


def weights_variant(folder: Path, dtype: torch.dtype) -> dict[str, str]:
    """``{"variant": "fp16"}`` where the folder holds fp16 weights that suit ``dtype``
    (half precision, or the only weights there are); otherwise nothing."""
    names = [p.name for p in folder.glob("*.safetensors")] if folder.is_dir() else []
    half = [n for n in names if ".fp16" in n]
    full = [n for n in names if ".fp16" not in n]
    return {"variant": "fp16"} if half and (dtype != torch.float32 or not full) else {}
