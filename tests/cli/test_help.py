"""``--help`` conventions (diffkit.cli.help): order, summaries, panels, metavars."""

from __future__ import annotations

import re

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from diffkit.cli.app import app
from diffkit.cli.help import COMMAND_ORDER, SUMMARY
from tests.docs.test_user_words import internal_words

runner = CliRunner()


def _commands(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            yield from _commands(command, (*path, name))
        yield (*path, name), command


ROOT = typer.main.get_command(app)
ALL = list(_commands(ROOT))


def _help(*path: str, width: int = 100) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_speaks_to_users():
    """No command's --help names the project's history (issue numbers, the reports it grew
    from, their task and part numbers); wide, so that no phrase is split across lines."""
    found = {}
    for path in [(), *(p for p, _ in ALL)]:
        text = " ".join(_help(*path, width=200).replace("│", " ").split())
        if words := internal_words(text):
            found[" ".join(path)] = words
    assert not found


def test_config_descriptions_speak_to_users():
    """The config fields' descriptions (docs, --print-config's neighbours) likewise."""
    from diffkit.config import run

    found = {}
    for name in dir(run):
        model = getattr(run, name)
        for field, info in getattr(model, "model_fields", {}).items():
            if info.description and (words := internal_words(info.description)):
                found[f"{name}.{field}"] = words
    assert not found


def test_commands_are_listed_in_the_order_a_user_meets_them():
    listed = re.findall(r"^│ ([a-z-]+) ", _help().split("Commands")[1], flags=re.M)
    expected = [c for c in COMMAND_ORDER if c in ROOT.commands]
    assert listed == expected
    assert listed[:6] == ["train", "sample", "edit", "eval", "reflow", "cache-bench"]


def test_every_command_has_a_one_line_summary():
    for path, command in ALL:
        assert SUMMARY.get(" ".join(path)) == command.short_help, path
        assert len(command.short_help) <= 72, path


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p))
def test_help_shows_no_typer_placeholders(path):
    text = _help(*path, width=80)
    for bad in ("<bool>", "<int", "<float", "<path>", "<text>", "<list", "{source}", "…"):
        assert bad not in text, (bad, path)
    assert "9223372036854775806" not in text  # the seed's bound is said in words


def test_options_sit_in_their_panels():
    text = _help("sample")
    panels = dict(re.findall(r"╭─ ([A-Za-z ]+?) ─+╮(.*?)╰", text, flags=re.S))
    assert "--sampler" in panels["Sampler"] and "--steps" in panels["Sampler"]
    assert "--guidance" in panels["Guidance"] and "--hint" in panels["Guidance"]
    assert "--cache-interval" in panels["DeepCache"]
    assert "--out" in panels["Output"] and "--device" in panels["Machine"]
    train = _help("train", "ddpm")
    assert "Previews and evaluation" in train and "Optimisation" in train
    # A panel name is the same for the same option in every command that has it.
    training = [c for p, c in ALL if p[0] in ("train", "distill") or p == ("reflow", "train")]
    panels = {
        (o.name, o.rich_help_panel) for c in training for o in c.params if o.opts[0][0] == "-"
    }
    assert len({name for name, _ in panels}) == len(panels)
    # So is it in every command that does not train, and those share options with training.
    using = [c for p, c in ALL if c not in training and not isinstance(c, TyperGroup)]
    used = {(o.name, o.rich_help_panel) for c in using for o in c.params if o.opts[0][0] == "-"}
    assert len({name for name, _ in used}) == len(used)
    assert {name for name, _ in panels} & {name for name, _ in used} >= {
        "seed",
        "classifier",
        "device",
    }


def test_number_of_images_is_n_or_num_images_everywhere():
    for path, command in ALL:
        for param in command.params:
            if param.name == "n":
                assert param.opts[0] == "-n", path
                assert param.opts[1] in ("--num-images", "--num-pairs", "--num-paths"), path


def test_usage_names_arguments_in_capitals():
    assert "Usage: diffkit sample [OPTIONS] SOURCE" in _help("sample")


def test_shell_completion_is_offered():
    text = _help()
    assert "--install-completion" in text and "--show-completion" in text
