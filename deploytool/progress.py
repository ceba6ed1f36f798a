"""Where a long command is, on stderr (stdout stays the result: a table or ``--json``).

export, validate and bench report two kinds of event: a *stage* starts (loading the source,
exporting a worker's formats, checking artifacts, timing one row) and a *step* happens within it (an
artifact being exported, an artifact's check finished). What the user sees depends on where stderr
goes (``for_stream``):

- a terminal: a live display through rich, one line per stage with a spinner, the artifact at hand
  and the elapsed time; finished stages stay on screen with their time;
- a log (CI, a pipe, a file): one plain line per stage, prefixed with the elapsed time
  (``[deploytool   3.2s] exporting onnx, torchscript (torch worker)``);
- ``--debug``: the log form, plus one line per step;
- ``--quiet``: nothing.

The API takes a ``Progress`` or a plain callable (which receives every message as one string).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    """The sink commands report to. This base shows nothing (the API's default)."""

    def stage(self, text: str) -> None:
        """A new stage starts (the previous one, if any, is over)."""

    def step(self, artifact: str, text: str) -> None:
        """Something happened to ``artifact`` within the current stage."""

    def close(self) -> None:
        """The command is over (also on errors): finish the display."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Callback(Progress):
    """A plain callable receives every stage and step as one message."""

    def __init__(self, fn: Callable[[str], None]) -> None:
        self.fn = fn

    def stage(self, text: str) -> None:
        self.fn(text)

    def step(self, artifact: str, text: str) -> None:
        self.fn(f"  {artifact}: {text}")


class Lines(Progress):
    """One line per stage (and per step with ``detail``), with the time since the command started."""

    def __init__(self, stream: TextIO | None = None, detail: bool = False) -> None:
        self.stream, self.detail, self.t0 = stream, detail, time.monotonic()

    def _line(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"[deploytool {time.monotonic() - self.t0:6.1f}s] {text}\n")
        stream.flush()

    def stage(self, text: str) -> None:
        self._line(text)

    def step(self, artifact: str, text: str) -> None:
        if self.detail:
            self._line(f"  {artifact}: {text}")


class Live(Progress):
    """A rich live display on a terminal: one row per stage (spinner, stage, artifact, elapsed)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.display = RichProgress(SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description}"),
                                    TextColumn("[dim]{task.fields[artifact]}"), TimeElapsedColumn(),
                                    console=Console(file=stream or sys.stderr), transient=False)
        self.task: Any = None
        self.display.start()

    def _finish(self) -> None:
        if self.task is not None:
            self.display.update(self.task, total=1, completed=1, artifact="")
            self.display.stop_task(self.task)

    def stage(self, text: str) -> None:
        self._finish()
        self.task = self.display.add_task(text, total=None, artifact="")

    def step(self, artifact: str, text: str) -> None:
        if self.task is not None:
            self.display.update(self.task, artifact=f"{artifact}: {text}")

    def close(self) -> None:
        self._finish()
        self.display.stop()


def for_stream(debug: bool = False, quiet: bool = False, stream: TextIO | None = None) -> Progress:
    """The display that fits where stderr goes (see the module docstring)."""
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    if debug:
        return Lines(stream, detail=True)
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return Live(stream)
    return Lines(stream)


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    if progress is None:
        return Progress()
    return progress if isinstance(progress, Progress) else Callback(progress)
