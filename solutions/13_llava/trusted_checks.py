"""The grader's own checks of 13_llava (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel by independent float64 implementations written here (LLaVA's projector
builder, its label masking and splicing, and the shifted next-token cross-entropy, written out).
Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_configure_stage``: its input is a model (``Llava``) whose parameters it switches on and off,
  and what it returns is that model's own parameters: neither can travel as plain arrays;
- that ``build_projector`` raises ``ValueError`` for an unknown kind (the kernel's test checks it);
  here the projector of each kind is loaded with the grader's weights strictly and run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from autograder.trusted import Case, Check, normal, tensor

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- build_projector
def _projector_state(rng, depth: int, dv: int, d: int) -> dict[str, np.ndarray]:
    """LLaVA's builder: ``nn.Linear`` for 'linear', else an ``nn.Sequential`` [Linear, GELU, Linear, ...]."""
    if depth == 1:
        return {"weight": normal(rng, d, dv, scale=0.5), "bias": normal(rng, d, scale=0.5)}
    state = {}
    for i in range(depth):
        state[f"{2 * i}.weight"] = normal(rng, d, dv if i == 0 else d, scale=0.6)
        state[f"{2 * i}.bias"] = normal(rng, d, scale=0.5)
    return state


def _projector_cases(rng):
    cases = []
    for kind, depth, dv, d in (("linear", 1, 6, 5), ("mlp2x_gelu", 2, 8, 12), ("mlp3x_gelu", 3, 5, 7)):
        x = normal(rng, 2, 4, dv, scale=2.0)
        cases.append(Case((x,), init=(kind, dv, d), state=_projector_state(rng, depth, dv, d), double=True))
    return cases


def _projector(case, activation=lambda h: F.gelu(h)):
    x = tensor(case.args[0])
    if "weight" in case.state:
        return [(x @ tensor(case.state["weight"]).T + tensor(case.state["bias"])).numpy()]
    depth = len(case.state) // 2
    for i in range(depth):
        if i:
            x = activation(x)
        x = x @ tensor(case.state[f"{2 * i}.weight"]).T + tensor(case.state[f"{2 * i}.bias"])
    return [x.numpy()]


# ------------------------------------------------------------------------------ make_labels
def _labels_cases(rng):
    cases = []
    for b, length, pad_id in ((3, 9, 0), (4, 12, int(rng.integers(1, 30)))):
        ids = rng.integers(0, 30, size=(b, length))
        ids[ids == pad_id] = pad_id + 1                    # padding only where we put it
        response = rng.random((b, length)) < 0.5
        for row in range(b):
            n = int(rng.integers(length // 2, length + 1))
            ids[row, n:] = pad_id                          # right padding ...
            response[row, n:] = row % 2 == 0               # ... inside the response mask in some rows
        cases.append(Case((ids.astype(np.int64), response, pad_id)))
    return cases


def _labels(case, mask_instructions=True, mask_padding=True, shift=0):
    ids, response, pad_id = case.args
    keep = (response if mask_instructions else np.ones_like(response)) & (ids != pad_id if mask_padding else True)
    labels = np.where(keep, ids, IGNORE_INDEX)
    if shift > 0:                                           # labels moved left: each is the next token
        labels = np.concatenate([labels[:, shift:], np.full_like(labels[:, :shift], IGNORE_INDEX)], axis=1)
    elif shift < 0:
        labels = np.concatenate([np.full_like(labels[:, :-shift], IGNORE_INDEX), labels[:, :shift]], axis=1)
    return [labels]


# --------------------------------------------------------------------- splice_image_features
IMAGE_ID = 5


def _splice_cases(rng):
    cases = []
    for b, length, p, d in ((3, 7, 3, 4), (4, 5, 1, 3), (2, 4, 6, 5)):
        ids = rng.integers(10, 50, size=(b, length))
        where = rng.integers(0, length, size=b)
        where[0], where[-1] = 0, length - 1                # the image first in one row, last in another
        ids[np.arange(b), where] = IMAGE_ID
        labels = np.where(rng.random((b, length)) < 0.6, ids, IGNORE_INDEX)
        cases.append(Case((normal(rng, b, length, d), ids.astype(np.int64), labels.astype(np.int64),
                           normal(rng, b, p, d), IMAGE_ID)))
    return cases


def _splice(case, image_label=IGNORE_INDEX):
    embeds, ids, labels, features, image_id = case.args
    out_e, out_l = [], []
    for row in range(ids.shape[0]):
        w = int(np.flatnonzero(ids[row] == image_id)[0])
        out_e.append(np.concatenate([embeds[row, :w], features[row], embeds[row, w + 1:]]))
        out_l.append(np.concatenate([labels[row, :w], np.full(features.shape[1], image_label), labels[row, w + 1:]]))
    return [np.stack(out_e), np.stack(out_l)]


# ---------------------------------------------------------------------------- causal_lm_loss
def _loss_cases(rng):
    cases = []
    for b, length, vocab in ((2, 6, 11), (4, 9, 7), (3, 5, 13)):
        logits = normal(rng, b, length, vocab, scale=2.0)
        labels = rng.integers(0, vocab, size=(b, length))
        labels[rng.random((b, length)) < 0.4] = IGNORE_INDEX
        labels[:, 0] = rng.integers(0, vocab, size=b)      # position 0 is never a target
        labels[:, 1] = rng.integers(0, vocab, size=b)      # at least one target per row
        labels[-1, 2:] = IGNORE_INDEX                      # rows with different numbers of targets
        cases.append(Case((logits, labels.astype(np.int64))))
    return cases


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def _loss(case, shift=1, cut=False, per_row=False):
    logits, labels = case.args
    if cut:
        logits, labels = logits[:, :-1], labels[:, :-1]
    log_probs = _log_softmax(logits)
    rows = []
    for row in range(labels.shape[0]):
        terms = [-log_probs[row, t, labels[row, t + shift]] for t in range(labels.shape[1] - shift)
                 if labels[row, t + shift] != IGNORE_INDEX]
        rows.append(terms)
    if per_row:
        return [np.array(np.mean([np.mean(r) for r in rows if r]))]
    terms = [t for r in rows for t in r]
    return [np.array(np.mean(terms)) if terms else np.array(math.nan)]


CHECKS = [
    Check("test_build_projector", "build_projector", _projector_cases, _projector, module=True,
          atol=1e-10, rtol=1e-9,
          mistakes={"GELU with the tanh approximation (LLaVA's nn.GELU() is the exact one)":
                    lambda case: _projector(case, lambda h: F.gelu(h, approximate="tanh")),
                    "ReLU instead of GELU between the linear layers": lambda case: _projector(case, torch.relu)}),
    Check("test_make_labels", "make_labels", _labels_cases, _labels, atol=0, rtol=0,
          mistakes={"instruction tokens not masked: only the assistant responses are targets":
                    lambda case: _labels(case, mask_instructions=False),
                    "padding not masked: pad tokens must be -100": lambda case: _labels(case, mask_padding=False),
                    "labels shifted twice: keep labels aligned with input_ids, the loss does the shift":
                    lambda case: _labels(case, shift=1),
                    "labels shifted twice (to the right): keep labels aligned with input_ids":
                    lambda case: _labels(case, shift=-1)}),
    Check("test_splice_image_features", "splice_image_features", _splice_cases, _splice, atol=0, rtol=0,
          mistakes={"image positions labelled with the <image> token id: they must be IGNORE_INDEX (-100)":
                    lambda case: _splice(case, image_label=IMAGE_ID),
                    "image positions labelled 0: they must be IGNORE_INDEX (-100)":
                    lambda case: _splice(case, image_label=0)}),
    Check("test_causal_lm_loss", "causal_lm_loss", _loss_cases, _loss, atol=1e-10, rtol=1e-9,
          forbidden=("next_token_loss",),
          mistakes={"logits and labels not shifted: position t must predict the label at t + 1":
                    lambda case: _loss(case, shift=0),
                    "logits and labels not shifted (both cut at :-1): position t must predict the label at t + 1":
                    lambda case: _loss(case, shift=0, cut=True),
                    "labels shifted twice: shift once, logits[:, :-1] against labels[:, 1:]":
                    lambda case: _loss(case, shift=2),
                    "a mean per row, then over the rows: average over all the targets of the batch":
                    lambda case: _loss(case, per_row=True)}),
]
