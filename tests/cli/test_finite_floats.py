"""Every float option refuses nan and inf at the edge: a NaN guidance scale would otherwise
turn every image into NaN and exit 0."""

from __future__ import annotations

import pytest
import typer

from diffkit.cli.app import app
from diffkit.cli.errors import UsageError, check_finite
from tests.cli.util import invoke


def _float_options() -> list[tuple[list[str], str]]:
    """(command path, option) for every float option of every command."""

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    found = []
    for path, cmd in walk(typer.main.get_command(app), []):
        for p in cmd.params:
            if getattr(p, "opts", None) and "float" in repr(p.type_descriptor).lower():
                found.append((path, p.opts[0]))
    return found


FLOAT_OPTIONS = _float_options()


def test_the_table_covers_the_commands():
    commands = {tuple(path) for path, _ in FLOAT_OPTIONS}
    assert {("sample",), ("eval",), ("train", "ddpm"), ("reflow", "make-pairs")} <= commands
    assert len(FLOAT_OPTIONS) >= 15


@pytest.mark.parametrize(("path", "option"), FLOAT_OPTIONS, ids=lambda v: str(v))
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_option_refuses_non_finite(path, option, value, tmp_path):
    # Positional arguments get a path that does not exist: the check comes first.
    args = [*path] + (["missing"] if path[0] in ("sample", "eval", "cache-bench", "ema") or
                      path[-1] in ("make-pairs", "straightness") else [])  # fmt: skip
    if path == ["train", "ldm"]:
        args += ["--vae", str(tmp_path / "vae")]
    if path[0] == "edit":  # a source, then the prompts or the image each op requires
        prompts = path[1] in ("anagram", "hybrid", "sample", "factorize")
        args += ["--model", "missing", *(["1", "2"] if prompts else ["--image", "missing.png"])]
    result = invoke(*args, f"{option}={value}")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], lines
    assert not any(tmp_path.iterdir())


def test_check_finite_names_the_flag():
    check_finite({"eta": 0.5, "steps": 3, "name": "x", "values": [1.0, 2.0]})
    with pytest.raises(UsageError, match="--cond-drop: nan"):
        check_finite({"cond_drop": float("nan")})
    with pytest.raises(UsageError, match="--scales: inf"):
        check_finite({"scales": [1.0, float("inf")]})


def test_range_callback_names_the_bounds():
    from diffkit.cli.options import in_range

    check = in_range(0.0, 1.0)
    assert check(0.0) == 0.0 and check(1.0) == 1.0 and check(None) is None
    for bad in (float("nan"), float("inf"), -0.5, 1.5):
        with pytest.raises(typer.BadParameter, match=">= 0 and <= 1"):
            check(bad)
    with pytest.raises(typer.BadParameter, match=r"^nan is not a finite number >= 0$"):
        in_range(0.0)(float("nan"))
