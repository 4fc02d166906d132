"""diffkit builds as a wheel, and the wheel alone runs the CLI.

The wheel is built from a copy of what a source distribution would hold (pyproject.toml,
README.md, diffkit/), so that nothing outside the package (benchmarks/, docs/, tests/) can
leak into it and the build leaves no build/ or egg-info in the checkout. It is installed
with ``--no-deps`` into a fresh venv that sees the already installed dependencies (torch,
typer, ...): ``--system-site-packages`` reaches the base interpreter's packages, and when
the tests run inside a venv (the usual ``pip install -e ".[dev]"``) a ``.pth`` file adds that
venv's site-packages too, as a plain path, so its editable diffkit finder is not installed
and the only diffkit importable is the wheel's. The CLI then runs from a folder outside the
checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import diffkit

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "diffkit", src / "diffkit", ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
           "--no-index", "-q", "-w", tmp / "dist", "."]  # fmt: skip
    done = _run(cmd, src, dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    (found,) = (tmp / "dist").glob("diffkit-*.whl")
    return found


def test_wheel_holds_the_package(wheel: Path) -> None:
    assert wheel.name == f"diffkit-{diffkit.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "diffkit/cli/entry.py" in names
    # diffkit.samplers.registry reads its siblings' source to list the samplers
    assert "diffkit/samplers/ddim.py" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "docs/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "diffkit = diffkit.cli.entry:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_the_cli(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    if sys.prefix != sys.base_prefix:  # running in a venv: its packages are the dependencies
        purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       tmp_path, dict(os.environ)).stdout.strip()  # fmt: skip
        Path(purelib, "_outer_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
               "--no-index", "-q", wheel]  # fmt: skip
    done = _run(install, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr

    where = _run([python, "-c", "import diffkit; print(diffkit.__file__)"], tmp_path, env)
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout + where.stderr

    exe = bindir / ("diffkit.exe" if os.name == "nt" else "diffkit")
    helped = _run([exe, "--help"], tmp_path, env)
    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "train" in helped.stdout and "sample" in helped.stdout
    version = _run([exe, "--version"], tmp_path, env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"diffkit {diffkit.__version__}"

    # The one file outside the package that diffkit reads (the small preset's measured
    # training time, benchmarks/results/) is absent from a wheel: the note falls back.
    note = _run([python, "-c", "from diffkit.training.estimate import small_preset_note as f; "
                 "print(f('ddpm'))"], tmp_path, env)  # fmt: skip
    assert note.returncode == 0, note.stderr
    assert note.stdout.strip() == "`--preset small` is sized for a CPU"
