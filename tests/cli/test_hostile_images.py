"""Hostile image files and samplers that cannot be steered, in the style of
``test_bad_inputs``: each invocation exits 2 with exactly one ``error:`` line on stderr,
prints nothing on stdout and leaves every file as it was.

The bombs are 69-byte PNGs whose header declares 30000 x 30000 pixels: decoding one would
need 900 MB (2.7 GB as RGB), so diffkit must refuse it from the header alone."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffkit.data.images import open_image
from diffkit.errors import ImageError
from tests.cli.util import TINY, invoke, last_line, refused


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR declares ``width`` x ``height`` (8-bit gray) and whose
    one IDAT holds 64 zero bytes: a decompression bomb as its header shows it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    """A DDPM run, a flow run, a ControlNet on the DDPM, and image files good and bad."""
    root = tmp_path_factory.mktemp("hostile")
    runs = root / "runs"
    common = ("--data-dir", data_dir, "--runs-dir", runs)
    run = last_line(invoke("train", "ddpm", *TINY, *common, "--name", "d"))
    flow = last_line(invoke("train", "rf", *TINY, *common, "--name", "f"))
    ctrl = last_line(invoke("train", "controlnet", "--base", run, *TINY[2:], *common,
                            "--name", "c"))  # fmt: skip
    (root / "bomb.png").write_bytes(png_claiming(30000, 30000))  # over PIL's own limit too
    (root / "big.png").write_bytes(png_claiming(9000, 9000))  # over diffkit's, under PIL's
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / "ok.png")
    whole = (root / "ok.png").read_bytes()
    (root / "cut.png").write_bytes(whole[: len(whole) // 2])  # truncated mid-IDAT
    (root / "lying.png").write_bytes(png_claiming(28, 28))  # 64 bytes for 28 x 29 needed
    hints = root / "hints"
    hints.mkdir()
    (hints / "a.png").write_bytes(whole)
    (hints / "b.png").write_bytes(png_claiming(30000, 30000))
    bombs = root / "bombs"
    bombs.mkdir()
    (bombs / "x.png").write_bytes(png_claiming(30000, 30000))
    return {"root": root, "data": data_dir, "run": run, "flow": flow, "ctrl": ctrl,
            "bomb": root / "bomb.png", "big": root / "big.png", "ok": root / "ok.png",
            "cut": root / "cut.png", "lying": root / "lying.png", "hints": hints,
            "bombs": bombs}  # fmt: skip


HUGE = "its header declares 30000x30000 pixels, over the limit of 67108864 (8192x8192)"
UNREAD = "cannot read it as an image"
DDPM = (
    "the samplers that can be steered: ddpm, ddim, dpm++2m, dpm++3m, unipc, euler, midpoint, "
    "heun, rk4"
)
FLOW = "the samplers that can be steered: euler, midpoint, heun, rk4"
ADAPTIVE = "--sampler dopri5 is adaptive (it picks its own steps) and"
PART_WAY = "starts it part-way;"
PASTES = "inpaint pastes the known region in after every step;"
EDIT = "--steps 4 --image {ok} --sampler dopri5"

CASES = [
    # image bombs, refused from the header before anything is decoded
    ("edit sdedit --model {run} --image {bomb} --steps 4", f"--image {{bomb}}: {HUGE}"),
    ("edit sdedit --model {run} --image {big} --steps 4", "declares 9000x9000 pixels"),
    (
        "edit inpaint --model {run} --mask {ok} --steps 4 --image {bomb}",
        f"--image {{bomb}}: {HUGE}",
    ),
    ("edit inpaint --model {run} --image {ok} --mask {bomb} --steps 4", f"--mask {{bomb}}: {HUGE}"),
    ("edit denoise --model {flow} --image {bomb} --steps 4 --start 2", f"--image {{bomb}}: {HUGE}"),
    ("edit noise --image {bomb}", f"{HUGE}; set DIFFKIT_MAX_IMAGE_PIXELS to read larger images"),
    ("edit noise --image {bomb} --size 28", f"--image {{bomb}}: {HUGE}"),
    ("sample {ctrl} --hint {bomb} -n 1 --steps 2", f"--hint {{bomb}}: {HUGE}"),
    ("sample {ctrl} --hint {hints} -n 2 --steps 2", f"--hint {{hints}}/b.png: {HUGE}"),
    ("edit sdedit --model {ctrl} --image {ok} --hint {bomb} --steps 4", f"--hint {{bomb}}: {HUGE}"),
    ("train ddpm --preset tiny --dataset folder:{bombs}", "over 67108864 pixels: DIFFKIT_MAX"),
    ("DIFFKIT_MAX_IMAGE_PIXELS=100 edit noise --image {ok}", "28x28 pixels, over the limit of 100"),
    ("DIFFKIT_MAX_IMAGE_PIXELS=0 edit noise --image {ok}", "invalid max_image_pixels"),
    # truncated and corrupt files
    ("edit sdedit --model {run} --image {cut} --steps 4", f"--image {{cut}}: {UNREAD}"),
    ("edit sdedit --model {run} --image {lying} --steps 4", f"--image {{lying}}: {UNREAD}"),
    ("edit inpaint --model {run} --image {ok} --mask {cut} --steps 4", f"--mask {{cut}}: {UNREAD}"),
    ("edit noise --image {cut}", f"--image {{cut}}: {UNREAD}"),
    ("sample {ctrl} --hint {cut} -n 1 --steps 2", f"--hint {{cut}}: {UNREAD}"),
    ("sample {ctrl} --hint {lying} -n 1 --steps 2", f"--hint {{lying}}: {UNREAD}"),
    # adaptive solvers cannot start part-way or be steered: refused before any network runs
    (f"edit sdedit --model {{run}} {EDIT} --start 2", f"{ADAPTIVE} sdedit {PART_WAY} {DDPM}"),
    (f"edit inpaint --model {{run}} {EDIT} --box 0,0,28,14", f"{ADAPTIVE} {PASTES} {DDPM}"),
    (f"edit denoise --model {{run}} {EDIT} --start 2", f"{ADAPTIVE} denoise {PART_WAY} {DDPM}"),
    (f"edit sdedit --model {{flow}} {EDIT} --start 0,2", f"{ADAPTIVE} sdedit {PART_WAY} {FLOW}"),
    (f"edit inpaint --model {{flow}} {EDIT} --mask {{ok}}", f"{ADAPTIVE} {PASTES} {FLOW}"),
    (f"edit denoise --model {{flow}} {EDIT} --start 1", f"{ADAPTIVE} denoise {PART_WAY} {FLOW}"),
    (f"edit sdedit --model {{ctrl}} {EDIT} --hint {{ok}}", f"{ADAPTIVE} sdedit {PART_WAY} {DDPM}"),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_invocation(world, line: str, expected: str, monkeypatch):
    line_ = refused(line, world, monkeypatch)
    assert expected.format(**world) in line_, line_


def test_the_limit_can_be_raised_and_pils_own_is_left_as_it_was(world, monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFKIT_MAX_IMAGE_PIXELS", str(28 * 28))  # ok.png exactly
    last_line(invoke("edit", "noise", "--image", world["ok"], "--out", tmp_path / "n"))
    saved = Image.MAX_IMAGE_PIXELS
    with open_image(world["ok"], "--image", ImageError, max_pixels=1000) as img:
        assert Image.MAX_IMAGE_PIXELS == 1000 and img.size == (28, 28)  # frames: the same limit
    assert saved == Image.MAX_IMAGE_PIXELS
    with (
        pytest.raises(ImageError, match="over the limit of 100 "),
        open_image(world["ok"], "--image", ImageError, max_pixels=100),
    ):
        pass
    assert saved == Image.MAX_IMAGE_PIXELS


def test_sdedit_from_pure_noise_is_not_steered(world, tmp_path):
    # start 0 only: the adaptive solver runs the whole span unsteered, as `sample` would
    folder = last_line(invoke("edit", "sdedit", "--model", world["flow"], "--image", world["ok"],
                              "--start", "0", "--steps", "4", "--sampler", "dopri5",
                              "--out", tmp_path / "s"))  # fmt: skip
    assert (folder / "edit.json").is_file()
