"""The ``diffkit`` executable: signals first, then the (heavy) imports, then the app.

Nothing imported here pulls in torch, so Ctrl-C or SIGTERM during start-up (importing
torch takes seconds) ends with one line and the right exit code instead of a traceback.
"""

from __future__ import annotations

import sys

from diffkit.cli import signals
from diffkit.cli.signals import Terminated, exit_code, exit_while_starting, install_sigterm


def main() -> None:
    install_sigterm()
    try:
        from diffkit.cli.app import app

        app()
    except KeyboardInterrupt as exc:  # before a command's own handler was in place
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"error: {what} while starting; nothing was written", file=sys.stderr)
        exit_while_starting(exit_code(exc))
    except SystemExit as exc:  # the root group reported a signal Typer swallowed
        if signals.state["starting"]:
            exit_while_starting(exc.code if isinstance(exc.code, int) else 1)
        raise


if __name__ == "__main__":
    main()
