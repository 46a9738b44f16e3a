"""A small data-parallel training job, the recipe's payload: run it under torchrun (one or many nodes).

    torchrun --standalone --nproc-per-node=4 hpc/train_ddp.py --steps 200 --out results/run1
    srun bash hpc/torchrun_node.sh hpc/train_ddp.py --steps 200 --out results/$SLURM_JOB_ID

Every rank trains a replica of an MLP with DistributedDataParallel on its shard of a synthetic
classification set (NCCL and one GPU per rank when CUDA is there, gloo on CPUs otherwise) and writes
``OUT/rank<RANK>.json`` with its losses and a checksum of its parameters: the replicas must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64, help="global batch size (split over the ranks)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("results"))
    return parser.parse_args()


def synthetic_data(n: int = 8192, d: int = 32, classes: int = 8) -> TensorDataset:
    """The same data on every rank (fixed seed): inputs labelled by a random linear teacher."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    teacher = torch.randn(d, classes, generator=gen)
    return TensorDataset(x, (x @ teacher).argmax(1))


def main() -> None:
    args = parse_args()
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if rank == 0:
        print(f"world size {world} ({os.environ.get('NNODES', os.environ.get('SLURM_NNODES', '?'))} node(s)), "
              f"backend {dist.get_backend()}", flush=True)
    print(f"rank {rank} (local {local_rank}) on {socket.gethostname()}", flush=True)

    dataset = synthetic_data()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True)
    loader = DataLoader(dataset, batch_size=args.batch // world, sampler=sampler, drop_last=True)
    torch.manual_seed(0)   # same initial weights everywhere (DDP also broadcasts rank 0's)
    model = DDP(nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 8)).to(device),
                device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    losses, step, epoch, start = [], 0, 0, time.perf_counter()
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)     # the global batch's mean loss
            losses.append(mean_loss.item())
            step += 1
            if rank == 0 and (step % 50 == 0 or step == args.steps):
                print(f"step {step:5d}  loss {losses[-1]:.4f}", flush=True)
            if step == args.steps:
                break
        epoch += 1

    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world_size": world, "host": socket.gethostname(), "losses": losses,
        "param_checksum": checksum, "seconds": time.perf_counter() - start}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
