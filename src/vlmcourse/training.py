"""Training-loop helpers shared by the notebooks.

The notebooks write their own optimisation step where that is what they teach; ``run_steps`` only
runs it for a number of steps with a progress bar and records the history, so no notebook
re-implements the bookkeeping. ``train_classifier`` is the given image-classifier recipe of modules
05 and 06 (AdamW, one-cycle schedule, random shifts), where the training loop is not the lesson.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from vlmcourse.datasets import random_shift


def run_steps(
    step_fn: Callable[[int], float],
    steps: int,
    *,
    desc: str = "training",
    eval_fn: Callable[[], float] | None = None,
    eval_every: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Call ``step_fn(step)`` ``steps`` times; return ``{"loss": [...], "eval": [...]}``.

    ``step_fn`` performs one optimisation step and returns the loss as a float. If ``eval_fn`` is
    given, it is called every ``eval_every`` steps and after the last one (its values go to "eval").
    """
    history: dict[str, list[float]] = {"loss": [], "eval": []}
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        loss = float(step_fn(step))
        history["loss"].append(loss)
        is_last = step == steps - 1
        if eval_fn is not None and ((eval_every and (step + 1) % eval_every == 0) or is_last):
            history["eval"].append(float(eval_fn()))
        if step % 10 == 0 or is_last:
            postfix = {"loss": f"{loss:.4f}"}
            if history["eval"]:
                postfix["eval"] = f"{history['eval'][-1]:.4f}"
            bar.set_postfix(postfix)
    return history


def minibatches(*tensors: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                shuffle: bool = True) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield aligned minibatches of ``tensors`` (all with the same first dimension), forever."""
    count = tensors[0].shape[0]
    if any(t.shape[0] != count for t in tensors):
        raise ValueError("all tensors must have the same number of rows")
    while True:
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        for start in range(0, count - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            yield tuple(t[index] for t in tensors)


@torch.no_grad()
def accuracy(logits_fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
             labels: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction of ``inputs`` whose argmax of ``logits_fn(batch)`` equals ``labels``."""
    correct = 0
    for start in range(0, inputs.shape[0], batch_size):
        logits = logits_fn(inputs[start:start + batch_size])
        correct += int((logits.argmax(dim=-1) == labels[start:start + batch_size]).sum())
    return correct / max(int(inputs.shape[0]), 1)


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    steps: int,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    lr: float = 5e-3,
    batch_size: int = 64,
    max_shift: int = 1,
    seed: int = 0,
    eval_every: int = 50,
    desc: str = "training",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train an image classifier with AdamW and a one-cycle schedule, every batch freshly shifted.

    - ``model``: maps images ``(B, C, H, W)`` to logits ``(B, K)`` in eval mode (in train mode it may
      return anything ``loss_fn`` accepts, e.g. the two heads of a distilled ViT);
    - ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` (int64): the training set, drawn in
      shuffled minibatches of ``min(batch_size, N)``; each batch is translated by up to
      ``max_shift`` pixels (:func:`vlmcourse.datasets.random_shift`);
    - ``test_images`` ``(M, C, H, W)``, ``test_labels`` ``(M,)``: scored every ``eval_every`` steps and
      after the last one;
    - ``loss_fn(model, images, labels)``: the scalar training loss, by default the cross-entropy of
      ``model(images)`` against ``labels``;
    - ``seed`` seeds the generator of the batches and shifts only: initialise the model before.

    Returns ``{"loss": [steps floats], "eval": [test accuracies]}``; the model is left in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    batches = minibatches(images, labels, batch_size=min(batch_size, len(images)), generator=generator)

    def step(_: int) -> float:
        model.train()
        x, y = next(batches)
        x = random_shift(x, max_shift, generator=generator)
        loss = F.cross_entropy(model(x), y) if loss_fn is None else loss_fn(model, x, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        return loss.item()

    def test_accuracy() -> float:
        model.eval()
        return accuracy(model, test_images, test_labels)

    history = run_steps(step, steps, desc=desc, eval_fn=test_accuracy, eval_every=eval_every,
                        progress=progress)
    model.eval()
    return history
