"""The grader's own checks of 10_siglip (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel with open_clip's ``SigLipLoss`` (Algorithm 1 written out where open_clip
is missing). Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- the initial values of ``SigmoidLoss``'s parameters (t' = log 10, b = -10): the check loads its own
  ``t_prime`` and ``bias`` into the module, so it checks the loss it computes, not how it starts;
- gradients (of ``siglip_loss`` and ``siglip_loss_ring``): the kernel answers under ``torch.no_grad``;
- ``test_trained_siglip``: the result of training (CLIP against SigLIP across batch sizes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from autograder.trusted import Case, Check, normal, tensor

try:
    from open_clip.loss import SigLipLoss
except ImportError:
    SigLipLoss = None


def _algorithm_1(zimg, ztxt, t, b, negative_only=False):
    """open_clip's SigLipLoss._loss: -sum(log sigmoid(labels * logits)) / n on normalised features."""
    if SigLipLoss is not None:
        return SigLipLoss()._loss(zimg, ztxt, t, b, negative_only=negative_only)
    n = zimg.shape[0]
    labels = -torch.ones(n, n, dtype=zimg.dtype) + (0 if negative_only else 2 * torch.eye(n, dtype=zimg.dtype))
    return -F.logsigmoid(labels * (zimg @ ztxt.T * t + b)).sum() / n


def _pairs(rng, n: int, d: int, aligned: int) -> tuple[np.ndarray, np.ndarray]:
    img, txt = normal(rng, n, d, scale=2.0), normal(rng, n, d)
    img[:aligned] += 3 * txt[:aligned]                 # some aligned pairs: positives and negatives differ
    return img, txt


# ------------------------------------------------------------------------------- siglip_loss
def _loss_cases(rng):
    cases = []
    for n, d, t_prime, b in ((6, 8, math.log(10.0), -10.0), (6, 8, 2.0, -3.0), (11, 5, 1.0, 0.5), (11, 5, 3.5, -7.0)):
        img, txt = _pairs(rng, n, d, n // 2)
        cases.append(Case((img, txt, np.array(t_prime), np.array(b))))
    return cases


def _loss(case, normalise=True, exponentiate=True, bias_sign=1.0, labels=None, divide_by_pairs=False):
    img, txt, t_prime, b = (tensor(a) for a in case.args[:4])
    if normalise:
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    t = t_prime.exp() if exponentiate else t_prime
    n = img.shape[0]
    if labels is None:
        loss = _algorithm_1(img, txt, t, bias_sign * b)
    else:
        loss = -F.logsigmoid(labels(n, img.dtype) * (img @ txt.T * t + b)).sum() / n
    return [(loss / n if divide_by_pairs else loss).numpy()]


_LOSS_MISTAKES = {
    "labels with the wrong sign (-1 on the diagonal, +1 elsewhere)":
        lambda case: _loss(case, labels=lambda n, dtype: 1 - 2 * torch.eye(n, dtype=dtype)),
    "normalised by B^2 (a mean over all pairs) instead of by the batch size B":
        lambda case: _loss(case, divide_by_pairs=True),
    "labels 0/1 (eye) instead of +1/-1": lambda case: _loss(case, labels=lambda n, dtype: torch.eye(n, dtype=dtype)),
    "temperature not exponentiated (t = exp(t_prime))": lambda case: _loss(case, exponentiate=False),
    "features not normalised": lambda case: _loss(case, normalise=False),
    "bias subtracted instead of added": lambda case: _loss(case, bias_sign=-1.0),
}


# ------------------------------------------------------------------------------- SigmoidLoss
def _module_cases(rng):
    cases = []
    for n, d in ((5, 4), (9, 6)):
        img, txt = _pairs(rng, n, d, 2)
        state = {"t_prime": np.array(rng.uniform(0.5, 3.0)), "bias": np.array(rng.uniform(-10.0, 1.0))}
        cases.append(Case((img, txt), state=state, double=True))
    init_t, init_b = float(rng.uniform(2.0, 20.0)), float(rng.uniform(-12.0, -2.0))
    img, txt = _pairs(rng, 6, 4, 2)
    return cases + [Case((img, txt), init=(init_t, init_b), double=True)]   # as the constructor made it


def _as_loss_case(case) -> Case:
    if not case.state:                 # the initial parameters: t' = log(init_t), b = init_b
        init_t, init_b = case.init
        return Case(tuple(case.args) + (np.array(math.log(init_t)), np.array(init_b)))
    return Case(tuple(case.args) + (case.state["t_prime"], case.state["bias"]))


def _init_without_log(case) -> list[np.ndarray]:
    if case.state:
        return [np.full(1, np.nan)]
    init_t, init_b = case.init
    return _loss(Case(tuple(case.args) + (np.array(float(init_t)), np.array(init_b))))


# ----------------------------------------------------------------------- siglip_loss_at_init
def _at_init_cases(rng):
    return [Case((int(n), float(b))) for n, b in ((1, -10.0), (4, -10.0), (int(rng.integers(2, 64)), 0.0),
                                                   (int(rng.integers(2, 300)), float(rng.uniform(-12, 3))))]


def _at_init(case, negatives=lambda n: n - 1, divide=1, swap=False):
    n, b = case.args
    positive, negative = math.log1p(math.exp(-b)), math.log1p(math.exp(b))
    if swap:
        positive, negative = negative, positive
    return [np.array((positive + negatives(n) * negative) / (n if divide == "n" else 1))]


def _at_init_reference(case):
    """open_clip's loss on orthogonal embeddings (every cosine 0), where that is cheap; else the formula."""
    n, b = case.args
    if n > 64:
        return _at_init(case)
    basis = torch.eye(2 * n, dtype=torch.float64)
    return [_algorithm_1(basis[:n], basis[n:], torch.tensor(10.0, dtype=torch.float64),
                         torch.tensor(b, dtype=torch.float64)).numpy()]


# -------------------------------------------------------------------------- siglip_block_sum
def _block_cases(rng):
    cases = []
    for p, q, d, diagonal in ((4, 4, 8, True), (4, 4, 8, False), (4, 6, 8, False), (3, 7, 5, False), (5, 5, 3, True)):
        zimg = F.normalize(tensor(normal(rng, p, d)), dim=-1).numpy()
        ztxt = F.normalize(tensor(normal(rng, q, d)), dim=-1).numpy()
        cases.append(Case((zimg, ztxt, np.array(rng.uniform(0.5, 2.5)), np.array(rng.uniform(-3.0, 1.0)), diagonal)))
    return cases


def _block(case, divide=False):
    zimg, ztxt, t_prime, b = (tensor(a) for a in case.args[:4])
    diagonal = case.args[4]
    if zimg.shape[0] == ztxt.shape[0]:
        total = _algorithm_1(zimg, ztxt, t_prime.exp(), b, negative_only=not diagonal) * zimg.shape[0]
    else:                                   # rectangular (open_clip's _loss takes square blocks only)
        total = F.softplus(zimg @ ztxt.T * t_prime.exp() + b).sum()
    return [(total / zimg.shape[0] if divide else total).numpy()]


# -------------------------------------------------------------------------- siglip_loss_ring
def _ring_cases(rng):
    cases = []
    for n, d, devices, t_prime, b in ((12, 8, 1, math.log(10.0), -10.0), (12, 8, 3, math.log(10.0), -10.0),
                                      (12, 8, 4, 1.5, -2.0), (10, 6, 3, 2.0, -5.0), (10, 6, 10, 2.0, -5.0)):
        img, txt = _pairs(rng, n, d, n // 2)
        cases.append(Case((img, txt, np.array(t_prime), np.array(b), devices)))
    return cases


def _ring_wrong(case, every_block_diagonal=False, local_batch=False):
    img, txt, t_prime, b = (tensor(a) for a in case.args[:4])
    devices = case.args[4]
    images, texts = F.normalize(img, dim=-1).chunk(devices), F.normalize(txt, dim=-1).chunk(devices)
    total = 0.0
    for p, zimg in enumerate(images):
        for q, ztxt in enumerate(texts):
            labels = -torch.ones(len(zimg), len(ztxt), dtype=img.dtype)
            if p == q or every_block_diagonal:
                labels = labels + 2 * torch.eye(len(zimg), len(ztxt), dtype=img.dtype)
            total = total + -F.logsigmoid(labels * (zimg @ ztxt.T * t_prime.exp() + b)).sum()
    return [(total / (len(images[0]) if local_batch else img.shape[0])).numpy()]


CHECKS = [
    Check("test_siglip_loss", "siglip_loss", _loss_cases, _loss, forbidden=("SigLipLoss", "open_clip_siglip"),
          mistakes=_LOSS_MISTAKES),
    Check("test_SigmoidLoss", "SigmoidLoss", _module_cases, lambda case: _loss(_as_loss_case(case)), module=True,
          forbidden=("SigLipLoss", "open_clip_siglip"),
          mistakes={**{name: (lambda case, wrong=wrong: wrong(_as_loss_case(case)))
                       for name, wrong in _LOSS_MISTAKES.items()},
                    "temperature initialised at init_t instead of log(init_t)": _init_without_log}),
    Check("test_siglip_loss_at_init", "siglip_loss_at_init", _at_init_cases, _at_init_reference,
          forbidden=("SigLipLoss", "open_clip_siglip"),
          mistakes={"n negatives per image instead of n - 1": lambda case: _at_init(case, negatives=lambda n: n),
                    "divided by n^2 instead of n": lambda case: _at_init(case, divide="n"),
                    "positive and negative terms swapped": lambda case: _at_init(case, swap=True)}),
    Check("test_siglip_block_sum", "siglip_block_sum", _block_cases, _block, forbidden=("SigLipLoss", "_loss"),
          mistakes={"divided by the number of images (return the plain sum)": lambda case: _block(case, divide=True)}),
    Check("test_siglip_loss_ring", "siglip_loss_ring", _ring_cases, lambda case: _loss(case),
          forbidden=("SigLipLoss", "open_clip_siglip"),
          mistakes={"divided by the local batch size instead of the global one":
                    lambda case: _ring_wrong(case, local_batch=True),
                    "every block treated as a diagonal block (positives exist only where q == p)":
                    lambda case: _ring_wrong(case, every_block_diagonal=True)}),
]
