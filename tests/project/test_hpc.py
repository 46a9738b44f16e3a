"""The SLURM recipes in hpc/: shell syntax, and a two-node run simulated on one machine.

Two torchrun launches (two "nodes", one rank each, gloo) share a c10d rendezvous on loopback, started
by the very script that `srun` runs on every node (hpc/torchrun_node.sh), and train hpc/train_ddp.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HPC = REPO / "hpc"
SCRIPTS = sorted([*HPC.glob("*.sh"), *HPC.glob("*.sbatch")])


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shell_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_batch_scripts_use_one_torchrun_per_node_and_c10d() -> None:
    multi = (HPC / "multi_node.sbatch").read_text()
    node = (HPC / "torchrun_node.sh").read_text()
    assert "srun --ntasks-per-node=1" in multi and "hpc/torchrun_node.sh" in multi
    assert "scontrol show hostnames" in multi and "head -n 1" in multi
    assert "--rdzv-backend=c10d" in node and "--rdzv-id=" in node
    assert "--standalone" in (HPC / "single_node.sbatch").read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fake_slurm_env(tmp_path: Path, node_id: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_NODEID": str(node_id),
                "SLURM_JOB_NODELIST": "localhost", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "GPUS_PER_NODE": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
                "CUDA_VISIBLE_DEVICES": ""})
    return env


def test_node_script_finds_the_first_host_with_scontrol(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-node-07\\ngpu-node-08\\n'\n")
    (fake_bin / "scontrol").chmod(0o755)
    env = _fake_slurm_env(tmp_path, 0, 0)
    del env["MASTER_ADDR"], env["MASTER_PORT"]
    env.update({"PATH": f"{fake_bin}:{env['PATH']}", "PYTHON": "echo", "SLURM_JOB_NODELIST": "gpu-node-[07-08]"})
    out = subprocess.run(["bash", str(HPC / "torchrun_node.sh"), "train.py"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "--rdzv-endpoint=gpu-node-07:24242" in out, out
    assert "--nnodes=2" in out and "--rdzv-id=4242" in out and out.strip().endswith("train.py")


def test_two_nodes_on_loopback_train_in_step(tmp_path: Path) -> None:
    port, out_dir = _free_port(), tmp_path / "results"
    nodes = [subprocess.Popen(["bash", str(HPC / "torchrun_node.sh"), str(HPC / "train_ddp.py"),
                               "--steps", "40", "--out", str(out_dir)],
                              cwd=REPO, env=_fake_slurm_env(tmp_path, i, port), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for i in range(2)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=300)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    assert all(node.returncode == 0 for node in nodes), "\n---\n".join(o[-3000:] for o in outputs)
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2], "the two nodes did not join one world of 2 ranks"
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=1e-9), \
        "the replicas on the two nodes diverged"
    losses = ranks[0]["losses"]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, \
        f"no learning: {losses[:3]} ... {losses[-3:]}"
