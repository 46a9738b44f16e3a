"""Tests of vlmcourse.distributed: real torchrun launches (gloo on the CPU).

Each launch costs a torchrun start-up (about 6 s on a quiet 2-core machine), so the file keeps to
three launches: results and output, a failing rank, and a deadlock that must end as a clean timeout.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from vlmcourse.distributed import LaunchError, LaunchTimeout, _to_cpu, _where_stuck, launch


def _parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")"
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


def _leftover_workers() -> list[int]:
    """torchrun processes started by this test process (other test workers may run their own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"vlm-torchrun-" in (entry / "cmdline").read_bytes() and \
                        _is_descendant(int(entry.name), os.getpid()):
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _sum_of_ranks(scale: float) -> dict:
    value = torch.full((3,), float(dist.get_rank() + 1)) * scale
    dist.all_reduce(value)
    print(f"rank {dist.get_rank()} of {dist.get_world_size()}")
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": value,
            "port_env": os.environ["MASTER_PORT"]}


def _fails_on_rank_one() -> str:
    if dist.get_rank() == 1:
        raise ValueError("shards have unequal sizes")
    dist.barrier()
    return "unreachable"


def _deadlock() -> None:
    buffer = torch.zeros(2)
    dist.recv(buffer, src=1 - dist.get_rank())  # every rank receives first: nobody ever sends
    dist.send(buffer, dst=1 - dist.get_rank())


def test_launch_returns_per_rank_results_and_output(capsys: pytest.CaptureFixture) -> None:
    results = launch(_sum_of_ranks, nproc=2, scale=2.0)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 for r in results)
    for r in results:
        torch.testing.assert_close(r["sum"], torch.full((3,), 6.0))
    printed = capsys.readouterr().out
    assert "[rank 0] rank 0 of 2" in printed and "[rank 1] rank 1 of 2" in printed
    assert _leftover_workers() == []


def test_failing_rank_is_reported_with_its_message() -> None:
    with pytest.raises(LaunchError) as caught:
        launch(_fails_on_rank_one, nproc=2)
    message = str(caught.value)
    assert "rank 1 raised ValueError: shards have unequal sizes" in message
    assert not isinstance(caught.value, LaunchTimeout)
    assert _leftover_workers() == []


def test_deadlock_ends_in_a_clean_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(LaunchTimeout) as caught:
        launch(_deadlock, nproc=2, timeout=3)
    message = str(caught.value)
    assert "deadlock" in message
    assert "_deadlock" in message and "recv" in message  # where each rank was waiting
    assert time.monotonic() - start < 120
    assert _leftover_workers() == []


def test_helpers_without_a_launch() -> None:
    nested = _to_cpu({"a": [torch.ones(1, requires_grad=True) * 2, (torch.zeros(2),)], "b": 3})
    assert nested["b"] == 3 and not nested["a"][0].requires_grad and isinstance(nested["a"][1], tuple)
    log = ('Stack (most recent call first):\n'
           '  File "/x/torch/distributed/distributed_c10d.py", line 10 in recv\n'
           '  File "<cell>", line 4 in ring_all_reduce\n'
           '  File "/x/vlmcourse/distributed.py", line 3 in _worker_main\n')
    assert _where_stuck(log) == "ring_all_reduce (line 4), inside torch.distributed.recv"
