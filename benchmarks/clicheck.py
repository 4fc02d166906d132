"""Fingerprint what the commands write, to show a refactor of the command layer changed no
output: the same files, tensors bit for bit, images pixel for pixel, the same JSON.

    python benchmarks/clicheck.py OUT.json RUNS DATA_DIR          # before, on the old commit
    python benchmarks/clicheck.py OUT2.json RUNS DATA_DIR         # after
    python benchmarks/clicheck.py --compare OUT.json OUT2.json
    CLICHECK_ONLY=sample,edit python benchmarks/clicheck.py ...   # only these commands

RUNS holds tiny runs named ddpm-eps, ddpm-cls, rf, rf-cls, ldm, rf-latent, ctrl, den and clf
(a DDPM, a class-conditional DDPM, flows, latent models, a ControlNet, a denoiser, a
classifier; any training length). Every command runs in-process into a fresh folder; a
file's fingerprint is the sha256 of its tensors (safetensors), its pixels (PNG) or its JSON
with the keys that hold times, speeds, dates and paths removed. A command's exit code and
its printed lines (times and paths masked) are fingerprinted too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

VOLATILE = re.compile(r"time|second|_s$|date|created|elapsed|per_s|img_s|speed|path|dir|"
                      r"source|sha|version|host|torch|python|device_name|out$|folder|run$|ms|wall|"
                      r"throughput|speedup|fps")  # fmt: skip


def commands(r: Path, data: Path) -> dict[str, list[str]]:
    d, clf = ["--data-dir", str(data)], ["--classifier", str(r / "clf")]
    img = ["--image", "mnist:test:0", *d]
    # fmt: off
    return {
        "sample-default": ["sample", r / "ddpm-eps", "-n", "6", "--steps", "4", "--seed", "1"],
        "sample-dpm": ["sample", r / "ddpm-cls", "-n", "5", "--steps", "4", "--sampler",
                       "dpm++2m", "--class", "3", "--guidance", "2", "--batch-size", "2"],
        "sample-grid": ["sample", r / "ddpm-cls", "--grid-per-class", "-n", "2", "--steps",
                        "3"],
        "sample-ddpm": ["sample", r / "ddpm-eps", "-n", "3", "--sampler", "ddpm", "--steps",
                        "5", "--spacing", "karras"],
        "sample-flow": ["sample", r / "rf", "-n", "4", "--sampler", "heun", "--steps", "3"],
        "sample-flow-cls": ["sample", r / "rf-cls", "-n", "4", "--class", "1", "--guidance",
                            "3", "--steps", "3"],
        "sample-dopri5": ["sample", r / "rf", "-n", "2", "--sampler", "dopri5"],
        "sample-ldm": ["sample", r / "ldm", "-n", "3", "--steps", "3"],
        "sample-rf-latent": ["sample", r / "rf-latent", "-n", "3", "--steps", "3"],
        "sample-ctrl": ["sample", r / "ctrl", "--hint", "mnist:test:0..3", "--steps", "3", *d],
        "sample-cache": ["sample", r / "ddpm-eps", "-n", "3", "--steps", "6",
                         "--cache-interval", "2"],
        "sample-ode-ddpm": ["sample", r / "ddpm-eps", "-n", "2", "--sampler", "rk4", "--steps",
                            "3"],
        "eval": ["eval", r / "ddpm-eps", "-n", "20", "--steps", "2", *clf, *d],
        "eval-sweep": ["eval", r / "rf", "--sweep", "steps=1,2", "--samplers", "euler,heun",
                       "-n", "12", *clf, *d],
        "eval-guidance": ["eval", r / "ddpm-cls", "--sweep", "guidance=0,2", "--steps", "2",
                          "-n", "10", *clf, *d],
        "anagram": ["edit", "anagram", "--model", r / "ddpm-cls", "6", "9", "--views",
                    "identity,rot180", "-n", "2", "--steps", "3"],
        "hybrid": ["edit", "hybrid", "--model", r / "ddpm-cls", "1", "8", "--sigma", "1.5",
                   "--kernel", "7", "-n", "2", "--steps", "3"],
        "factorize": ["edit", "factorize", "--model", r / "ddpm-cls", "1", "8", "0",
                      "--sigmas", "3,1", "--kernel", "9", "-n", "2", "--steps", "3"],
        "sdedit": ["edit", "sdedit", "--model", r / "ddpm-cls", *img, "--steps", "4",
                   "--start", "0,3", "--prompt", "7"],
        "sdedit-flow": ["edit", "sdedit", "--model", r / "rf", *img, "--steps", "4",
                        "--start", "1", "--sampler", "euler"],
        "inpaint": ["edit", "inpaint", "--model", r / "ddpm-cls", *img, "--steps", "4",
                    "--box", "0,0,28,14", "-n", "2", "--resample", "2,2"],
        "inpaint-flow": ["edit", "inpaint", "--model", r / "rf", *img, "--steps", "4",
                         "--box", "0,0,28,14", "-n", "2", "--sampler", "heun"],
        "noise": ["edit", "noise", "--model", r / "ddpm-eps", *img, "--at", "0,500,999"],
        "denoise": ["edit", "denoise", "--model", r / "ddpm-eps", *img, "--start", "2",
                    "--steps", "4"],
        "edit-sample": ["edit", "sample", "--model", r / "ddpm-cls", "4", "-n", "2", "--steps",
                        "3"],
        "cache-bench": ["cache-bench", r / "ddpm-eps", "-n", "10", "--steps", "4",
                        "--intervals", "2", *clf, *d],
        "denoise-bench": ["denoise-bench", r / "den", "-n", "8", *clf, *d],
        "export": ["export", r / "ddpm-eps"],
    }
    # fmt: on


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def file_print(path: Path) -> str:
    if path.suffix == ".safetensors":
        import torch
        from safetensors.torch import load_file

        def raw(t: torch.Tensor) -> bytes:  # the bytes of any dtype, bfloat16 included
            return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()

        return _digest({k: hashlib.sha256(raw(v)).hexdigest() for k, v in load_file(path).items()})
    if path.name in ("cache-bench.png", "sweep.png", "loss.png"):
        return "present"  # plots of measured speed
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            return hashlib.sha256(im.tobytes()).hexdigest() + f"-{im.size}"
    if path.suffix == ".json":
        return _digest(_clean(json.loads(path.read_text())))
    if path.suffix == ".jsonl":
        return _digest([_clean(json.loads(line)) for line in path.read_text().splitlines()])
    return "present"  # logs, cards, csv: only that they are written


def mask(text: str) -> list[str]:
    text = re.sub(r"\d+(\.\d+)? ?(s|ms|min|img/s|it/s|MB|GB|GiB|MiB|x)\b", "T", text)
    text = re.sub(r"/\S+", "PATH", text)
    text = re.sub(r"│[^\n]*", "TABLE-ROW", text)  # tables hold timings; their files are checked
    return [line.strip() for line in text.splitlines() if line.strip()]


def fingerprint(runs: Path, data: Path) -> dict[str, object]:
    from typer.testing import CliRunner

    from diffkit.cli.app import app

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        only = [w for w in os.environ.get("CLICHECK_ONLY", "").split(",") if w]
        for name, args in commands(runs, data).items():
            if only and str(args[0]) not in only and name not in only:
                continue
            folder = Path(tmp) / name
            argv = [str(a) for a in args]
            argv += [str(folder)] if name == "export" else ["--out", str(folder)]
            if "bench" in name or name.startswith("eval"):  # they write into RUNS_DIR too
                argv += ["--runs-dir", str(Path(tmp) / f"{name}-runs")]
            result = CliRunner().invoke(app, argv)
            files = {}
            for base in (folder, Path(tmp) / f"{name}-runs"):
                for p in sorted(base.rglob("*")) if base.exists() else []:
                    if p.is_file():
                        key = re.sub(r"\d{6,}", "N", str(p.relative_to(base)))
                        files[key] = file_print(p)
            out[name] = {"exit": result.exit_code, "output": mask(result.output),
                         "files": files}  # fmt: skip
            print(f"{name}: exit {result.exit_code}, {len(files)} files", file=sys.stderr)
    return out


def main() -> None:
    if sys.argv[1] == "--compare":
        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[2:4])
        differ = [k for k in a if k in b and a[k] != b[k]]
        missing = [k for k in a if k not in b]
        for k in differ:
            for part in ("exit", "output", "files"):
                if a[k][part] != b.get(k, {}).get(part):
                    print(f"  {k}: {part} differs:\n    {a[k][part]}\n    {b.get(k, {}).get(part)}")
        same = len(a) - len(differ) - len(missing)
        said = f"; differ: {differ}" if differ else ""
        said += f"; not run: {missing}" if missing else ""
        print(f"{same} of {len(a)} commands identical{said}")
        sys.exit(1 if differ else 0)
    result = fingerprint(Path(sys.argv[2]), Path(sys.argv[3]))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
