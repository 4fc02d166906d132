"""The application layer: typed request -> result functions behind every command.

Each function here does what one ``diffkit`` command does, writes the same folders, and
can be called from Python without Typer. None of them prints: progress, notes and
warnings go to a :class:`~diffkit.app.report.Reporter` (the CLI passes its console; the
default, :data:`~diffkit.app.report.QUIET`, says nothing). Bad requests raise
:class:`~diffkit.errors.UsageError` and the other errors of :mod:`diffkit.errors`.
"""
