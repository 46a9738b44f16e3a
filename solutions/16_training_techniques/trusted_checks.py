"""The grader's own checks of 16_training_techniques (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel (PyTorch's own learning-rate schedulers, the byte counts of
fp32 Adam training, the noise-scale formula in float64). Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_bf16_train_step``, ``test_accumulation_step``: their inputs are a model and an optimizer,
  and what they check is a training step (autocast, the gradients of accumulated micro-batches);
- ``test_dynamic_loss_scaler``: its input is an optimizer, and what it checks is the scale's
  dynamics over many steps with overflows;
- ``test_checkpointed_forward``: its input is a list of modules, and what it checks is the memory
  autograd keeps and the gradients;
- the measured results of the notebook (the critical batch size).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from autograder.trusted import Case, Check


# -------------------------------------------------------------------------- warmup_cosine_lr
def _schedule_cases(rng):
    cases = []
    for max_lr, warmup, total, min_lr in ((1e-3, 5, 30, 1e-5), (0.3, 1, 7, 0.0),
                                          (float(rng.uniform(1e-4, 1e-2)), int(rng.integers(2, 20)), 0, None)):
        total = total or warmup + int(rng.integers(5, 80))
        min_lr = max_lr * float(rng.uniform(0, 0.2)) if min_lr is None else min_lr
        steps = sorted({0, warmup - 1, warmup, total - 1, *(int(s) for s in rng.integers(0, total, size=4))})
        cases += [Case((step, max_lr, warmup, total, min_lr)) for step in steps]
    return cases


def _torch_schedule(max_lr: float, warmup: int, total: int, min_lr: float) -> list[float]:
    """PyTorch's SequentialLR(LinearLR, CosineAnnealingLR): the learning rate of every step."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    schedule = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)], milestones=[warmup])
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return lrs


def _schedule(case):
    step, max_lr, warmup, total, min_lr = case.args
    return [np.array(_torch_schedule(max_lr, warmup, total, min_lr)[step])]


def _warmup_from_zero(case):
    step, max_lr, warmup, total, min_lr = case.args
    return [np.array(max_lr * step / warmup)] if step < warmup else _schedule(case)


def _cosine_to_zero(case):
    step, max_lr, warmup, total, min_lr = case.args
    return _schedule(Case((step, max_lr, warmup, total, 0.0)))


# --------------------------------------------------------------------------- training_memory
MEMORY_KEYS = ("parameters", "gradients", "optimizer", "activations")


def _memory_cases(rng):
    cases = []
    for _ in range(3):
        batch, tokens, dim, hidden, depth = (int(v) for v in rng.integers(1, [9, 200, 1025, 4097, 25]))
        n_params = depth * (2 * dim * hidden + hidden + dim + 2 * dim)     # the notebook's Block: LN + 2 Linear
        cases.append(Case((n_params, batch, tokens, dim, hidden, depth)))
    return cases


def _memory(case, adam_bytes=8, ln_stats=2):
    n_params, batch, tokens, dim, hidden, depth = case.args
    activations = depth * 4 * batch * tokens * (2 * dim + 2 * hidden + ln_stats)
    return [np.array(v) for v in (4 * n_params, 4 * n_params, adam_bytes * n_params, activations)]


# ---------------------------------------------------------------------- gradient_noise_scale
def _noise_cases(rng):
    cases = []
    for n, p in ((50, 7), (9, 30), (int(rng.integers(5, 200)), int(rng.integers(2, 60)))):
        cases.append(Case((rng.standard_normal((n, p)) + rng.standard_normal(p),)))
    return cases


def _noise(case, ddof=1):
    grads = case.args[0]
    return [np.array(grads.var(axis=0, ddof=ddof).sum() / np.square(grads.mean(axis=0)).sum())]


SCHEDULERS = ("cosine_with_warmup", "SequentialLR", "LinearLR", "CosineAnnealingLR", "LambdaLR", "OneCycleLR",
              "get_cosine_schedule_with_warmup")

CHECKS = [
    Check("test_warmup_cosine_lr", "warmup_cosine_lr", _schedule_cases, _schedule, atol=1e-9, rtol=1e-7,
          forbidden=SCHEDULERS,
          mistakes={"warmup starts at 0 (use (step + 1) / warmup)": _warmup_from_zero,
                    "the cosine decays to 0 instead of min_lr": _cosine_to_zero}),
    Check("test_training_memory", "training_memory", _memory_cases, _memory, keys=MEMORY_KEYS, atol=0, rtol=0,
          mistakes={"Adam state counted once per parameter (Adam keeps two fp32 moments: 8N bytes)":
                    lambda case: _memory(case, adam_bytes=4),
                    "the LayerNorm's mean and 1/std (b·n each) not counted in the activations":
                    lambda case: _memory(case, ln_stats=0)}),
    Check("test_gradient_noise_scale", "gradient_noise_scale", _noise_cases, _noise, atol=0, rtol=1e-9,
          mistakes={"the biased variance (divide by n - 1, not by n)": lambda case: _noise(case, ddof=0)}),
]
