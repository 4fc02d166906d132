"""``diffkit runs``: list run folders as a table."""

from __future__ import annotations

from typing import Any

from diffkit.cli import console
from diffkit.cli.errors import handle_errors
from diffkit.cli.flags import RUNS_DIR, takes
from diffkit.cli.options import settings_of


@handle_errors
@takes((RUNS_DIR,))
def runs(**o: Any) -> None:
    """List runs and pair sets, oldest first: date, method, name, steps and epochs done (of
    planned), status (running, finished, stopped, ...), last loss, best score (lowest
    in-training FID, or a classifier's test accuracy) and path."""
    from rich.markup import escape

    from diffkit.app.runs import COLUMNS, runs_table

    root = settings_of(o, computes=False).runs_dir
    rows = runs_table(root)
    if not rows:
        console.info(f"no runs under {root}")
        return
    console.table(f"runs in {escape(str(root))}", COLUMNS, rows)
