"""Building blocks shared by the generative vision-language notebooks (CoCa, Flamingo, LLaVA).

What a notebook *teaches* (attentional pooling, the Perceiver Resampler, gated cross-attention,
media masks, projectors, splicing, label masking, losses) is written by the learner; this module
only holds the parts around it that several notebooks need and that are not the lesson:

- ``TinyLM``: a small pre-norm causal Transformer language model built from
  ``nn.TransformerEncoderLayer``; it exposes its token embedding, its blocks and its head so that
  Flamingo can interleave new layers and LLaVA can feed it embeddings instead of token ids.
- ``TinyVisionEncoder``: a small convolutional encoder returning a grid of patch tokens, and
  ``pretrain_vision_encoder``, which trains it in seconds to recognise what is in each cell of the
  scene (our stand-in for a pretrained, then frozen, CLIP/NFNet image encoder).
- ``train_causal_lm``: next-token pretraining of a ``TinyLM`` on token ids (padding ignored).
- ``greedy_generate``: greedy decoding with any "logits of the next token" function.
- Text formats: ``format_chat`` (LLaVA's conversation template) and ``fewshot_episode``
  (Flamingo's interleaved image-text sequences), plus ``bleu`` for caption scores. Batches of such
  id lists are padded with ``vlmcourse.sequences.pad_rows``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmcourse.training import run_steps
from vlmcourse.world import COLOURS, GRID, SHAPES, SIZES, Scene, Tokenizer, images_tensor

IGNORE_INDEX = -100  # the label that cross-entropy skips (PyTorch's and LLaVA's convention)


# ----------------------------------------------------------------------------- language model
def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(length, length) float mask for ``nn.TransformerEncoderLayer``: 0 on and below the diagonal, -inf above."""
    return torch.triu(torch.full((length, length), float("-inf"), device=device), diagonal=1)


class TinyLM(nn.Module):
    """A small pre-norm causal Transformer LM: ``logits = head(norm(blocks(tok_emb(ids) + pos_emb)))``.

    ``embed(ids)`` gives token embeddings (no position), ``forward_embeds(x)`` runs the rest, so a
    model may replace some embeddings (LLaVA) or run ``block(i, h)`` one at a time (Flamingo).
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(n_layers)
        ])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, L) token ids -> (b, L, d) token embeddings, without positions."""
        return self.tok_emb(ids)

    def add_positions(self, x: torch.Tensor) -> torch.Tensor:
        """(b, L, d) -> (b, L, d) with the learned position embeddings added."""
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence of length {x.shape[1]} is longer than max_len={self.max_len}")
        return x + self.pos_emb[: x.shape[1]]

    def block(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Apply the causal block ``index`` to hidden states (b, L, d)."""
        mask = causal_mask(h.shape[1], h.device)
        return self.blocks[index](h, src_mask=mask, is_causal=True)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm and head: (b, L, d) -> (b, L, vocab)."""
        return self.head(self.norm(h))

    def forward_embeds(self, x: torch.Tensor) -> torch.Tensor:
        """(b, L, d) input embeddings -> (b, L, vocab) logits."""
        h = self.add_positions(x)
        for index in range(len(self.blocks)):
            h = self.block(index, h)
        return self.logits(h)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, L) token ids -> (b, L, vocab) logits of the next token at every position."""
        return self.forward_embeds(self.embed(ids))


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean cross-entropy of ``logits[:, :-1]`` against ``ids[:, 1:]``, padding ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                           ignore_index=pad_id)


def train_causal_lm(lm: TinyLM, ids: torch.Tensor, pad_id: int, *, steps: int, batch_size: int = 64,
                    lr: float = 3e-3, seed: int = 0, desc: str = "pretraining the LM",
                    progress: bool = True) -> dict[str, list[float]]:
    """Next-token pretraining of ``lm`` on the rows of ``ids`` (b, L) with AdamW and a cosine schedule."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps, warmup=min(50, steps // 10)))
    lengths = (ids != pad_id).sum(dim=1)

    def step(_: int) -> float:
        index = torch.randint(0, ids.shape[0], (batch_size,), generator=generator)
        batch = ids[index][:, : int(lengths[index].max())]  # drop columns that are padding everywhere
        loss = next_token_loss(lm(batch), batch, pad_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        return loss.item()

    lm.train()
    history = run_steps(step, steps, desc=desc, progress=progress)
    lm.eval()
    return history


def cosine_with_warmup(steps: int, warmup: int = 0, floor: float = 0.05) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``floor``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(steps - warmup, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


@torch.no_grad()
def greedy_generate(logits_fn: Callable[[torch.Tensor], torch.Tensor], prompts: Sequence[Sequence[int]], *,
                    max_new_tokens: int, stop_ids: Sequence[int], pad_id: int = 0) -> list[list[int]]:
    """Greedy decoding of a batch of prompts of different lengths.

    ``logits_fn(ids)`` maps right-padded ids (b, L) to next-token logits (b, L, vocab) of a causal
    model (position t predicts token t+1, so padding after a row's end never changes its logits).
    Each row grows by its argmax token until it emits one of ``stop_ids`` (kept in the output) or
    reaches ``max_new_tokens``. Returns the generated tokens of every row.
    """
    lengths = torch.tensor([len(p) for p in prompts])
    buffer = torch.full((len(prompts), int(lengths.max()) + max_new_tokens), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        buffer[row, :len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
    stop = torch.as_tensor(list(stop_ids), dtype=torch.long)
    done = torch.zeros(len(prompts), dtype=torch.bool)
    outputs: list[list[int]] = [[] for _ in prompts]
    rows = torch.arange(len(prompts))
    for _ in range(max_new_tokens):
        logits = logits_fn(buffer[:, : int(lengths.max())])  # (b, L, vocab)
        token = logits[rows, lengths - 1].argmax(dim=-1)  # (b,)
        for row in torch.nonzero(~done).flatten().tolist():
            outputs[row].append(int(token[row]))
        buffer[rows[~done], lengths[~done]] = token[~done]
        lengths = lengths + (~done).long()
        done |= torch.isin(token, stop)
        if bool(done.all()):
            break
    return outputs


# ----------------------------------------------------------------------------- vision encoder
class TinyVisionEncoder(nn.Module):
    """Images (b, 3, 48, 48) -> a 3 x 3 grid of patch tokens (b, 9, d), in reading order.

    8 x 8 patches embedded by a convolution, merged 2 x 2, two pointwise layers, then a learned
    position embedding per token: the stand-in for the patch tokens of a pretrained ViT's
    penultimate layer (which is what LLaVA and Flamingo consume). With 48-pixel images each token
    sees exactly one cell of the world's 3 x 3 grid. Cheap on a CPU.
    """

    def __init__(self, d_model: int = 64, image_size: int = 48, width: int = 32) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError("image_size must be a multiple of 16")
        self.d_model = d_model
        self.conv = nn.Sequential(
            nn.Conv2d(3, width, 8, stride=8), nn.GELU(),  # (b, w, H/8, W/8): 8x8 patches
            nn.Conv2d(width, 2 * width, 2, stride=2), nn.GELU(),  # (b, 2w, H/16, W/16): merge 2x2
            nn.Conv2d(2 * width, 2 * width, 1), nn.GELU(),
            nn.Conv2d(2 * width, d_model, 1),
        )
        self.grid = image_size // 16
        self.pos_emb = nn.Parameter(torch.randn(self.grid * self.grid, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv(images)  # (b, d, g, g)
        x = x.flatten(2).transpose(1, 2)  # (b, g*g, d)
        return self.norm(x + self.pos_emb)


CELL_CLASSES = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "size": len(SIZES) + 1}


def cell_targets(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Per grid cell: colour, shape and size index + 1 (0 = empty cell); each (n, 9) long."""
    out = {k: torch.zeros(len(scenes), GRID * GRID, dtype=torch.long) for k in CELL_CLASSES}
    for row, scene in enumerate(scenes):
        for o in scene.objects:
            cell = o.row * GRID + o.col
            out["colour"][row, cell] = o.colour_id + 1
            out["shape"][row, cell] = o.shape_id + 1
            out["size"][row, cell] = SIZES.index(o.size) + 1
    return out


def pretrain_vision_encoder(scenes: Sequence[Scene], *, d_model: int = 64, steps: int = 300,
                            batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                            progress: bool = True) -> tuple[TinyVisionEncoder, dict[str, list[float]]]:
    """Train a ``TinyVisionEncoder`` to tell, from each cell's token, the colour, shape and size there.

    A supervised stand-in for the large-scale pretraining of the image encoders that Flamingo and
    LLaVA keep frozen. The scenes must be rendered at 48 pixels (3 x 3 tokens, one per cell).
    Returns the encoder (eval mode, parameters frozen) and the loss history.
    """
    torch.manual_seed(seed)
    encoder = TinyVisionEncoder(d_model, image_size=scenes[0].image_size)
    if encoder.num_tokens != GRID * GRID:
        raise ValueError("pretrain_vision_encoder needs 48-pixel scenes: one token per cell")
    heads = nn.ModuleDict({k: nn.Linear(d_model, c) for k, c in CELL_CLASSES.items()})
    images = images_tensor(scenes)
    targets = cell_targets(scenes)
    params = list(encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps, warmup=20))
    generator = torch.Generator().manual_seed(seed)

    def step(_: int) -> float:
        index = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        tokens = encoder(images[index])  # (b, 9, d): token i sees cell i
        loss = sum(F.cross_entropy(heads[k](tokens).reshape(-1, c), targets[k][index].reshape(-1))
                   for k, c in CELL_CLASSES.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        return loss.item()

    history = run_steps(step, steps, desc="pretraining the vision encoder", progress=progress)
    encoder.eval().requires_grad_(False)
    return encoder, history


@torch.no_grad()
def encode_images(encoder: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Run a frozen ``encoder`` over (n, 3, H, W) images in batches: (n, tokens, d)."""
    return torch.cat([encoder(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)])


# ----------------------------------------------------------------------------- text formats
def format_chat(turns: Sequence[dict], tokenizer: Tokenizer) -> tuple[list[int], list[bool]]:
    """LLaVA's conversation template with the world's words, tokenised.

    ``<bos> user : <image> \\n question \\n assistant : answer <eos> user : ... assistant : ... <eos>``

    Returns the token ids and, for every token, whether it belongs to an assistant response (the
    answer words and the ``<eos>`` that closes them: the tokens a model is trained to produce).
    """
    ids, is_response = [tokenizer.bos_id], [False]
    for turn in turns:
        if turn["from"] == "human":
            part = tokenizer.encode("user : " + turn["value"] + "\nassistant :")
            ids += part
            is_response += [False] * len(part)
        else:
            part = tokenizer.encode(turn["value"]) + [tokenizer.eos_id]
            ids += part
            is_response += [True] * len(part)
    return ids, is_response


FEWSHOT_TASKS: tuple[str, ...] = ("colour", "shape", "size")


def fewshot_answer(scene: Scene, task: str) -> str:
    """What a few-shot episode says about one image: the colours, shapes or sizes of its objects."""
    if task not in FEWSHOT_TASKS:
        raise ValueError(f"task must be one of {FEWSHOT_TASKS}, got {task!r}")
    words = [getattr(o, task) for o in scene.objects]
    return " and ".join(words) + " ."


def fewshot_episode(scenes: Sequence[Scene], task: str, tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """Interleave images and text: ``<bos> <image> answer_1 <image> answer_2 ... <eos>``.

    Every image is followed by the answer of the same ``task`` about it (its colours, shapes or
    sizes): the task is never named, the examples show it. Returns the ids and, for each id, the
    index of the image whose answer it belongs to (-1 for ``<bos>`` and ``<eos>``).
    """
    ids, owner = [tokenizer.bos_id], [-1]
    for k, scene in enumerate(scenes):
        part = [tokenizer.image_id] + tokenizer.encode(fewshot_answer(scene, task))
        ids += part
        owner += [k] * len(part)
    return ids + [tokenizer.eos_id], owner + [-1]


# ----------------------------------------------------------------------------- metrics
def bleu(candidates: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU (one reference per candidate, uniform weights, brevity penalty), in [0, 1]."""
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for cand, ref in zip(candidates, references):
        c, r = cand.split(), ref.split()
        cand_len, ref_len = cand_len + len(c), ref_len + len(r)
        for n in range(1, max_n + 1):
            c_grams = Counter(tuple(c[i:i + n]) for i in range(len(c) - n + 1))
            r_grams = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(v, r_grams[g]) for g, v in c_grams.items())
            totals[n - 1] += max(len(c) - n + 1, 0)
    if min(matches) == 0 or cand_len == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = min(0.0, 1.0 - ref_len / cand_len)
    return float(np.exp(log_precision + brevity))


__all__ = [
    "CELL_CLASSES", "FEWSHOT_TASKS", "IGNORE_INDEX", "TinyLM", "TinyVisionEncoder", "bleu", "causal_mask",
    "cell_targets", "cosine_with_warmup", "encode_images", "fewshot_answer", "fewshot_episode", "format_chat",
    "greedy_generate", "next_token_loss", "pretrain_vision_encoder", "train_causal_lm",
]
