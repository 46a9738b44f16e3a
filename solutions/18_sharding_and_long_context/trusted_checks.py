"""The grader's own checks of 18_sharding_and_long_context (autograder/trusted.py): fresh inputs,
references computed outside the learner's kernel (attention over the union of the key blocks in
float64, the chunk arithmetic of the zig-zag layout, a plain loop over the routing queues).
Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_gathered_linear``, ``test_ring_attention``, ``test_expert_parallel_moe``: they run on
  several ranks under torchrun, which the grader's checks (one call in the kernel) do not start;
  their single-rank building blocks, ``merge_attention`` and ``route``, are checked here.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autograder.trusted import Case, Check, normal, tensor


# --------------------------------------------------------------------------- merge_attention
def _attention(q, k, v):
    scores = q @ k.T / math.sqrt(q.shape[-1])                          # (n, m)
    lse = torch.logsumexp(scores, dim=-1)
    return torch.softmax(scores, dim=-1) @ v, lse


def _merge_cases(rng):
    cases = []
    # scale 3000: log-sum-exps in the thousands, where exp overflows even in float64
    for n, m_a, m_b, d, scale in ((5, 3, 4, 8, 1.0), (4, 2, 6, 6, 3000.0)):
        q = tensor(normal(rng, n, d, scale=scale))
        k, v = tensor(normal(rng, m_a + m_b, d)), tensor(normal(rng, m_a + m_b, 3))
        out_a, lse_a = _attention(q, k[:m_a], v[:m_a])
        out_b, lse_b = _attention(q, k[m_a:], v[m_a:])
        cases.append(Case((out_a.numpy(), lse_a.numpy(), out_b.numpy(), lse_b.numpy())))
    out_a, lse_a = _attention(tensor(normal(rng, 3, 4)), tensor(normal(rng, 2, 4)), tensor(normal(rng, 2, 3)))
    empty = np.full(3, -np.inf)                                          # block B entirely masked out
    return cases + [Case((out_a.numpy(), lse_a.numpy(), np.zeros((3, 3)), empty))]


def _merge(case, rescale=True):
    out_a, lse_a, out_b, lse_b = (tensor(a) for a in case.args)
    lse = torch.logaddexp(lse_a, lse_b)
    if not rescale:
        return [(out_a + out_b).numpy(), lse.numpy()]
    return [(torch.exp(lse_a - lse)[:, None] * out_a + torch.exp(lse_b - lse)[:, None] * out_b).numpy(), lse.numpy()]


# -------------------------------------------------------------------------- zigzag_positions
def _zigzag_cases(rng):
    cases = []
    for world in (2, 3, int(rng.integers(2, 6))):
        seq_len = 2 * world * int(rng.integers(1, 5))
        cases += [Case((seq_len, rank, world)) for rank in range(world)]
    return cases


def _zigzag(case, late=lambda rank, world: 2 * world - 1 - rank):
    seq_len, rank, world = case.args
    c = seq_len // (2 * world)
    chunks = (rank, late(rank, world))
    return [np.concatenate([np.arange(j * c, (j + 1) * c) for j in chunks])]


# ------------------------------------------------------------------------------------- route
def _route_cases(rng):
    cases = []
    for tokens, d, experts, k, factor in ((12, 8, 4, 2, 1.0), (10, 6, 5, 1, 1.25), (16, 4, 4, 2, 0.5)):
        cases.append(Case((normal(rng, tokens, d), normal(rng, d, experts), k, factor)))
    return cases


def _route(case, with_k=True, renormalise=True, factor_e=True, choice_major=True):
    x, router_w = tensor(case.args[0]), tensor(case.args[1])
    k, capacity_factor = case.args[2], case.args[3]
    n_tokens, n_experts = x.shape[0], router_w.shape[1]
    probs = torch.softmax(x @ router_w, dim=-1)
    expert = torch.argsort(probs, dim=-1, descending=True, stable=True)[:, :k]
    gate = probs.gather(1, expert)
    gate = gate / gate.sum(dim=-1, keepdim=True) if renormalise else gate
    capacity = math.ceil(capacity_factor * (k if with_k else 1) * n_tokens / n_experts)
    load, keep = [0] * n_experts, np.zeros((n_tokens, k), dtype=bool)
    order = [(t, j) for j in range(k) for t in range(n_tokens)] if choice_major else \
        [(t, j) for t in range(n_tokens) for j in range(k)]
    for t, j in order:
        e = int(expert[t, j])
        keep[t, j] = load[e] < capacity
        load[e] += 1
    counts = torch.bincount(expert.reshape(-1), minlength=n_experts).double()
    aux = float((counts / (k * n_tokens) * probs.mean(dim=0)).sum()) * (n_experts if factor_e else 1)
    return [expert.numpy(), gate.numpy(), keep, np.array(capacity), np.array(aux)]


CHECKS = [
    Check("test_merge_attention", "merge_attention", _merge_cases, _merge,
          mistakes={"partial outputs added without rescaling by their softmax mass": lambda case: _merge(case, False)}),
    Check("test_zigzag_positions", "zigzag_positions", _zigzag_cases, _zigzag, atol=0, rtol=0,
          mistakes={"chunk r paired with chunk W + r instead of 2W - 1 - r":
                    lambda case: _zigzag(case, late=lambda rank, world: world + rank)}),
    Check("test_route", "route", _route_cases, _route, keys=("expert", "gate", "keep", "capacity", "aux_loss"),
          mistakes={"capacity without the factor k": lambda case: _route(case, with_k=False),
                    "gates not renormalised over the k chosen experts": lambda case: _route(case, renormalise=False),
                    "load-balancing loss without the factor E": lambda case: _route(case, factor_e=False),
                    "capacity taken token by token instead of all first choices first":
                    lambda case: _route(case, choice_major=False)}),
]
