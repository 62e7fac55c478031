"""Sampling the resident memory of a process and everything it started (Ray's raylet, its
workers and actors), on a background thread: the runner's per-stage peak and
benchmarks/scale.py's per-stage, per-actor figures both come from here."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psutil


def tree_rss(root: psutil.Process) -> Iterator[tuple[psutil.Process, int]]:
    """``(process, RSS in bytes)`` for each living descendant of ``root`` (not ``root``); one
    that exits between the listing and the reading is left out."""
    for proc in root.children(recursive=True):
        try:
            yield proc, proc.memory_info().rss
        except psutil.Error:
            continue


class EverySeconds(threading.Thread):
    """Calls ``sample()`` every ``every_s`` seconds until ``stop`` is set, and once more then.
    Ends quietly when the watched process is gone."""

    def __init__(self, every_s: float):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.stop = threading.Event()

    def sample(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.sample()
                self.stop.wait(self.every_s)
            self.sample()
        except psutil.NoSuchProcess:
            return


class PeakMemory(EverySeconds):
    """Within ``with``: ``peak``, the largest sum of this process's RSS and its descendants',
    and ``driver_peak``, this process's own, in bytes."""

    def __init__(self, every_s: float = 0.5):
        super().__init__(every_s)
        self.me = psutil.Process()
        self.peak = self.driver_peak = 0

    def sample(self) -> None:
        own = self.me.memory_info().rss
        self.driver_peak = max(self.driver_peak, own)
        self.peak = max(self.peak, own + sum(rss for _, rss in tree_rss(self.me)))

    def __enter__(self) -> PeakMemory:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()
