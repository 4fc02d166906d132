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


def test_plain_progress_lines_for_logs(monkeypatch, capsys):
    """Piped or logged stderr gets a line every `every` seconds: count, rate, time left."""
    from rich.console import Console

    from diffkit.cli import console

    monkeypatch.setattr(console, "err", Console(stderr=True, width=200))  # not a terminal
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 21.0, 22.0])
    monkeypatch.setattr(console.time, "perf_counter", lambda: next(clock, 30.0))
    lines = console.PlainLines("sample", 8, every=10.0)  # t0 = 0
    for _ in range(4):  # at t = 5, 10, 12, 20
        lines.advance(loss="0.5")
    out = capsys.readouterr().err.splitlines()
    assert out == [
        "sample: 2/8, loss 0.5, 0.2/s, eta 0:30",
        "sample: 4/8, loss 0.5, 0.2/s, eta 0:20",
    ]
    with console.steps("x", 3) as tick:  # stderr is no terminal: no bar, no blank lines
        tick()
    assert capsys.readouterr().err == ""


def test_data_event_names_classes_left_empty(monkeypatch, capsys):
    from rich.console import Console

    from diffkit.training import TrainEvent

    monkeypatch.setattr(console, "err", Console(stderr=True, width=200))
    event = {"dataset": "folder:pets", "skipped": 3, "images": 40, "empty_classes": ["bird"]}
    console.TrainProgress()(TrainEvent("data", 0, 0, event))
    out = capsys.readouterr().err
    assert "folder:pets: skipped 3 unreadable or oversized image file(s); training on 40" in out
    assert "warning: folder:pets: no readable image in class(es) bird" in out
