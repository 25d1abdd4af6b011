"""Terminal display for the pipeline: a line per stage with its time, rich progress bars inside.

Kept apart from the stages so that tests and other front ends can pass a silent UI.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichUI:
    """Stage lines, an epoch bar with loss/accuracy, and an image-count bar for verification."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: int | None = None

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        started = time.perf_counter()
        self.console.print(f"[bold cyan]▶ {name}[/] {detail}".rstrip())
        try:
            yield
        finally:
            self._close()
        self.console.print(f"  [dim]{name} done in {time.perf_counter() - started:.1f} s[/]")

    def _bar(self, description: str, total: int) -> Progress:
        if self._progress is None:
            self._progress = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(description, total=total, info="")
        return self._progress

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        bar = self._bar("epochs", epochs)
        if "generator_loss" in logs:  # a GAN: both networks' losses
            info = f"G loss {logs['generator_loss']:.4f} D loss {logs.get('discriminator_loss', 0):.4f}"
        else:
            info = (f"loss {logs.get('loss', 0):.4f} acc {logs.get('accuracy', 0) * 100:.2f}% "
                    f"lr {logs.get('lr', 0):.2e}")
        bar.update(self._task, completed=epoch + 1, info=info)
        self.console.print(f"  epoch {epoch + 1:>3}/{epochs}: {info} ({logs.get('seconds', 0):.1f} s)")

    def batch(self, done: int, total: int) -> None:
        return None  # the epoch bar is enough; per-batch refreshes cost time on 2 cores

    def images(self, done: int, total: int) -> None:
        bar = self._bar("TFLM", total)
        bar.update(self._task, completed=done)

    def note(self, text: str) -> None:
        self.console.print(f"  {text}")


class SilentUI:
    """A UI that shows nothing (tests, scripts)."""

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        yield

    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        return None

    def batch(self, done: int, total: int) -> None:
        return None

    def images(self, done: int, total: int) -> None:
        return None

    def note(self, text: str) -> None:
        return None
