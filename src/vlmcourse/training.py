"""A minimal training-loop driver shared by the notebooks.

The notebooks write their own optimisation step (that is what they teach); this module only runs it
for a number of steps with a progress bar and records the history, so no notebook re-implements
the bookkeeping.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm


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
