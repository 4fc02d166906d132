"""What diffkit prints: tables in logs and pipes keep their full width."""

from __future__ import annotations

from diffkit.cli import console


def test_wide_tables_are_not_truncated_in_pipes(capsys):
    columns = ["sampler", "steps", "w", "FID", "KID", "IS", "precision", "recall", "class acc",
               "seconds", "ms/img"]  # fmt: skip
    console.table("t", columns, [["ddpm", 50, 0, "15.676", "0.3732", "6.112", "0.559", "0.815",
                                  "0.089", "53.21", "53.21"]])  # fmt: skip
    out = capsys.readouterr().out
    assert "…" not in out
    assert all(c in out for c in columns) and "15.676" in out


def test_cells_are_not_markup(capsys):
    console.table("t", ["a"], [["[bold]x[/bold]"]])
    assert "[bold]x[/bold]" in capsys.readouterr().out
