"""The grader's own checks of 01_attention (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel. Never released to learners."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from autograder.trusted import Case, Check, normal, tensor


def _softmax_cases(rng):
    cases = []
    for dim in (0, 1, 2):
        shape = tuple(int(n) for n in rng.integers(2, 6, size=3))
        cases.append(Case((normal(rng, *shape, scale=20.0),), {"dim": dim}))
    return cases + [Case((np.array([[800.0, 799.0, -5.0]]),), {"dim": -1})]


def _valid_lens(rng, batch: int, n_queries: int, n_keys: int) -> list[np.ndarray]:
    return [rng.integers(1, n_keys + 1, size=batch), rng.integers(1, n_keys + 1, size=(batch, n_queries))]


def _masked_softmax_cases(rng):
    batch, n_q, n_k = 3, 4, 6
    scores = normal(rng, batch, n_q, n_k, scale=4.0)
    return [Case((scores, lens)) for lens in _valid_lens(rng, batch, n_q, n_k)] + [Case((scores, None))]


def _masked_softmax_reference(case):
    scores, lens = (tensor(a) if a is not None else None for a in case.args)
    if lens is None:
        return [torch.softmax(scores, -1).numpy()]
    lens = lens[:, None].expand(scores.shape[:2]) if lens.dim() == 1 else lens
    out = torch.zeros_like(scores)
    for b in range(scores.shape[0]):
        for i in range(scores.shape[1]):
            n = int(lens[b, i])
            out[b, i, :n] = torch.softmax(scores[b, i, :n], -1)
    return [out.numpy()]


def _additive_cases(rng):
    cases = []
    for q_dim, k_dim, hidden in ((3, 5, 4), (6, 2, 7)):
        cases.append(Case((normal(rng, 2, 3, q_dim), normal(rng, 2, 5, k_dim), normal(rng, hidden, q_dim),
                           normal(rng, hidden, k_dim), normal(rng, hidden))))
    return cases


def _additive_reference(case):
    queries, keys, W_q, W_k, w_v = (tensor(a) for a in case.args)
    features = torch.tanh((queries @ W_q.T)[:, :, None, :] + (keys @ W_k.T)[:, None, :, :])  # (b, n_q, n_k, h)
    return [(features @ w_v).numpy()]


def _attention_cases(rng):
    q, k, v = normal(rng, 2, 4, 8), normal(rng, 2, 6, 8), normal(rng, 2, 6, 3)
    mask = rng.random((2, 4, 6)) > 0.5
    mask[..., 0] = True                       # every query may attend to at least one key
    causal = np.tril(np.ones((4, 6), dtype=bool))
    return [Case((q, k, v)), Case((q, k, v, mask)), Case((q, k, v, causal))]


def _attention_reference(case, scale: float | None = None):
    q, k, v = (tensor(a) for a in case.args[:3])
    mask = tensor(case.args[3]) if len(case.args) > 3 else None
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, -1)
    return [(weights @ v).numpy(), weights.numpy()]


def _attention_flipped_mask(case):
    if len(case.args) < 4 or not (~case.args[3]).any(axis=-1).all():
        return [np.full(1, np.nan)]       # no mask, or a flipped mask that blocks a whole row: no match
    return _attention_reference(Case(tuple(case.args[:3]) + (~case.args[3],)))


def _masked_after_softmax(case):
    scores, lens = case.args
    if lens is None:
        return [np.full(1, np.nan)]
    lens = lens[:, None] if lens.ndim == 1 else lens
    keep = np.arange(scores.shape[-1])[None, None, :] < lens[..., None]
    return [torch.softmax(tensor(scores), -1).numpy() * keep]


def _additive_without_tanh(case):
    queries, keys, W_q, W_k, w_v = (tensor(a) for a in case.args)
    return [(((queries @ W_q.T)[:, :, None, :] + (keys @ W_k.T)[:, None, :, :]) @ w_v).numpy()]


def _mask_cases(rng):
    return [Case((lens,), {"n_queries": 4, "n_keys": 7}) for lens in _valid_lens(rng, 3, 4, 7)]


def _mask_reference(case):
    lens = tensor(case.args[0])
    lens = lens[:, None].expand(-1, case.kwargs["n_queries"]) if lens.dim() == 1 else lens
    return [(torch.arange(case.kwargs["n_keys"])[None, None, :] < lens[:, :, None]).numpy()]


def _memory_cases(rng):
    return [Case((int(rng.integers(10, 5000)),), {"layers": int(rng.integers(1, 50)), "heads": int(rng.integers(1, 33)),
                                                  "bytes_per_element": int(b)}) for b in (2, 4)]


def _memory_reference(case):
    n, kw = case.args[0], case.kwargs
    return [np.array(n * n * kw["layers"] * kw["heads"] * kw["bytes_per_element"])]


def _tiled_cases(rng):
    cases = []
    for n_q, n_k, block, causal in ((7, 11, 3, False), (9, 9, 4, True), (5, 13, 13, False)):
        cases.append(Case((normal(rng, 2, n_q, 8, scale=3.0), normal(rng, 2, n_k, 8, scale=3.0),
                           normal(rng, 2, n_k, 5), block), {"causal": causal}))
    # scores in the thousands: exp overflows in float32 unless the running max is subtracted
    cases.append(Case((normal(rng, 1, 6, 8, scale=40.0), normal(rng, 1, 10, 8, scale=40.0), normal(rng, 1, 10, 5), 4),
                      {"causal": False}))
    return cases


def _tiled_reference(case):
    q, k, v = (tensor(a) for a in case.args[:3])
    return [F.scaled_dot_product_attention(q, k, v, is_causal=case.kwargs["causal"]).numpy()]


def _self_attention_cases(rng):
    d_model, d_k = 6, 4
    state = {f"{name}.weight": normal(rng, d_k, d_model, scale=0.5) for name in ("W_q", "W_k", "W_v")}
    causal = np.tril(np.ones((5, 5), dtype=bool))
    x = normal(rng, 2, 5, d_model)
    return [Case((x,), init=(d_model, d_k), state=state, double=True),
            Case((x, causal), init=(d_model, d_k), state=state, double=True)]


def _self_attention_reference(case):
    x = tensor(case.args[0])
    q, k, v = (x @ tensor(case.state[f"{name}.weight"]).T for name in ("W_q", "W_k", "W_v"))
    mask = tensor(case.args[1]) if len(case.args) > 1 else None
    return _attention_reference(Case((q.numpy(), k.numpy(), v.numpy()) + ((mask.numpy(),) if mask is not None else ())))


CHECKS = [
    Check("test_softmax", "softmax", _softmax_cases,
          lambda case: [torch.softmax(tensor(case.args[0]), case.kwargs["dim"]).numpy()],
          forbidden=("softmax", "Softmax", "log_softmax"),
          mistakes={"normalised over the last axis whatever dim says":
                    lambda case: [torch.softmax(tensor(case.args[0]), -1).numpy()]}),
    Check("test_masked_softmax", "masked_softmax", _masked_softmax_cases, _masked_softmax_reference,
          mistakes={"mask applied after the softmax (rows no longer sum to 1)": _masked_after_softmax}),
    Check("test_additive_scores", "additive_scores", _additive_cases, _additive_reference,
          mistakes={"missing the tanh nonlinearity": _additive_without_tanh}),
    Check("test_scaled_dot_product_attention", "scaled_dot_product_attention", _attention_cases, _attention_reference,
          forbidden=("scaled_dot_product_attention", "MultiheadAttention"),
          mistakes={"missing the 1/sqrt(d) scale": lambda case: _attention_reference(case, scale=1.0),
                    "mask polarity flipped (True must mean: may attend)": _attention_flipped_mask}),
    Check("test_valid_lens_to_mask", "valid_lens_to_mask", _mask_cases, _mask_reference),
    Check("test_attention_memory_bytes", "attention_memory_bytes", _memory_cases, _memory_reference, atol=0, rtol=0,
          mistakes={"the matrix is n x n: the number of tokens is not squared":
                    lambda case: [np.array(_memory_reference(case)[0] // case.args[0])]}),
    Check("test_tiled_attention", "tiled_attention", _tiled_cases, _tiled_reference,
          forbidden=("scaled_dot_product_attention", "MultiheadAttention")),
    Check("test_self_attention", "SelfAttention", _self_attention_cases, _self_attention_reference, module=True,
          attributes=("attention_weights",), forbidden=("scaled_dot_product_attention", "MultiheadAttention")),
]
