"""The capstone as a batch job: CLIP trained data-parallel on the course's generated world, under torchrun.

    torchrun --standalone --nproc-per-node=4 hpc/train_clip.py --steps 300 --out results/clip
    srun --ntasks-per-node=1 bash hpc/torchrun_node.sh hpc/train_clip.py --steps 300 --out results/$SLURM_JOB_ID

Every rank encodes its share of each global batch with a replica of a small dual encoder (a ViT and a
causal text transformer, module 17's sizes) wrapped in DistributedDataParallel. The contrastive loss
is computed over the GLOBAL batch: open_clip's ClipLoss(local_loss=True, gather_with_grad=True)
all-gathers the features of every rank with their gradients, exactly what module 17 builds by hand.
NCCL and one GPU per rank when every local rank has a GPU, gloo on the CPU otherwise (said on stdout).
Each rank writes ``OUT/rank<RANK>.json``: the global loss per step, a checksum of its parameters (the
replicas must agree), the throughput and, on rank 0, retrieval recall@1 on unseen test scenes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from vlmcourse import world as W


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256, help="global batch of image-text pairs (split over ranks)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-scenes", type=int, default=4096)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("results"))
    return parser.parse_args()


class DualEncoder(nn.Module):
    """A ViT on 8x8 patches of 32x32 images and a causal text transformer read at <eos>."""

    def __init__(self, vocab_size: int, eos_id: int, width: int = 64, layers: int = 2, heads: int = 4,
                 context: int = 64) -> None:
        super().__init__()

        def blocks() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        self.eos_id = eos_id
        self.patch_embed = nn.Conv2d(3, width, 8, stride=8)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.image_positions = nn.Parameter(torch.randn(1, 17, width) * 0.02)
        self.image_blocks, self.image_norm = blocks(), nn.LayerNorm(width)
        self.image_proj = nn.Linear(width, width, bias=False)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.text_positions = nn.Parameter(torch.randn(context, width) * 0.01)
        self.text_blocks, self.text_norm = blocks(), nn.LayerNorm(width)
        self.text_proj = nn.Linear(width, width, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)                 # (b, 16, width)
        x = torch.cat([self.class_token.expand(len(x), -1, -1), x], dim=1) + self.image_positions
        return F.normalize(self.image_proj(self.image_norm(self.image_blocks(x)[:, 0])), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        x = self.token_embedding(tokens) + self.text_positions[:n]              # (b, n, width)
        causal = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device)
        x = self.text_norm(self.text_blocks(x, mask=causal, is_causal=True))
        at_eos = x[torch.arange(len(x), device=x.device), (tokens == self.eos_id).int().argmax(dim=-1)]
        return F.normalize(self.text_proj(at_eos), dim=-1)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale


def choose_backend(local_world: int) -> tuple[str, str]:
    """NCCL when this node has a GPU for every local rank, else gloo; and why."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus >= local_world:
        return "nccl", f"{gpus} GPU(s) for {local_world} local rank(s): NCCL, one GPU per rank"
    return "gloo", f"{gpus} GPU(s) for {local_world} local rank(s): gloo on the CPU"


def main() -> None:
    args = parse_args()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend, why = choose_backend(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if rank == 0:
        print(f"world size {world} ({os.environ.get('NNODES', '?')} node(s)); {why}", flush=True)
    print(f"rank {rank} (local {local_rank}) on {socket.gethostname()}", flush=True)
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the world size {world}")

    tokenizer = W.get_tokenizer()
    train = W.World(seed=0, split="train").caption_batch(args.train_scenes, tokenizer=tokenizer)
    torch.manual_seed(0)   # the same initial replica everywhere (DDP also broadcasts rank 0's)
    model = DDP(DualEncoder(len(tokenizer), tokenizer.eos_id, width=args.width).to(device),
                device_ids=[local_rank] if backend == "nccl" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    # Per rank: its own rows' loss over all gathered features; DDP's average is the global-batch gradient.
    loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)
    b = args.batch // world
    losses, start = [], time.perf_counter()
    for step in range(args.steps):
        # The same global batch on every rank (shared seed); each rank takes its rows.
        index = torch.randperm(args.train_scenes, generator=torch.Generator().manual_seed(step))[:args.batch]
        mine = index[rank * b:(rank + 1) * b]
        image_features, text_features, logit_scale = model(train["images"][mine].to(device),
                                                           train["tokens"][mine].to(device))
        loss = loss_fn(image_features, text_features, logit_scale.exp().clamp(max=100))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss, op=dist.ReduceOp.AVG)     # the mean of the ranks' shares: the global loss
        losses.append(global_loss.item())
        if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
            print(f"step {step:5d}  loss {losses[-1]:.4f}", flush=True)
    seconds = time.perf_counter() - start

    result = {"rank": rank, "world_size": world, "backend": backend, "host": socket.gethostname(),
              "losses": losses, "seconds": seconds, "pairs_per_s": args.batch * args.steps / seconds,
              "param_checksum": float(sum(p.detach().double().sum() for p in model.parameters()))}
    if rank == 0:
        test = W.World(seed=0, split="test").caption_batch(256, style="simple", tokenizer=tokenizer)
        with torch.no_grad():
            image_features, text_features, _ = model.module(test["images"].to(device), test["tokens"].to(device))
            similarity = image_features @ text_features.T                                   # (256, 256)
        hits = similarity.argmax(dim=1) == torch.arange(len(similarity), device=similarity.device)
        result["recall@1"] = float(hits.float().mean())
        print(f"test recall@1 (256 pairs, chance 0.004): {result['recall@1']:.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
