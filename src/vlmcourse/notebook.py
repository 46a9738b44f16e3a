"""The one preamble every course notebook runs, and the closing line that reports its run time.

    from vlmcourse import setup_notebook
    clock = setup_notebook(seed=0)   # first lines of the tagged setup cell
    ...
    clock.report()                   # last cell: "This notebook ran in 41 s (39 s of CPU time)."
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from vlmcourse.device import seed_everything


@dataclass
class NotebookClock:
    """Wall and CPU time since :func:`setup_notebook` ran."""

    wall_start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=time.process_time)

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.wall_start

    def cpu_seconds(self) -> float:
        return time.process_time() - self.cpu_start

    def report(self) -> str:
        """Print (and return) how long the notebook took, wall-clock and CPU."""
        line = (f"This notebook ran in {self.wall_seconds():.0f} s "
                f"({self.cpu_seconds():.0f} s of CPU time) on this machine.")
        print(line)
        return line


def setup_notebook(seed: int = 0, *, threads: int | None = 1, precision: int = 4) -> NotebookClock:
    """Make a notebook reproducible and quick on a small shared CPU; return its clock.

    - seeds Python, NumPy and PyTorch with ``seed``;
    - ``threads``: PyTorch intra-op threads. The course's models are tiny: one thread avoids the
      synchronisation overhead that dominates (and explodes on a busy machine) when several threads
      share such small matrix products. ``None`` leaves PyTorch's default;
    - prints tensors with ``precision`` digits and no scientific notation.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_printoptions(precision=precision, sci_mode=False)
    seed_everything(seed)
    return NotebookClock()
