"""The grader's own checks of 02_multihead_attention (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel: ``torch.nn.MultiheadAttention`` loaded with the grader's
weights for the attention layer (as the notebook's own ``copy_from_torch`` test does), the published
``get_slopes`` of ALiBi, and float64 implementations written here for the rest (reshapes, masks,
sinusoids, rotations, the positional attention layers). Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- the initialisation of ``LearnedPositionalEncoding``'s table (N(0, 0.02^2)) and the gradient that
  reaches it: the check loads its own table and the kernel answers under ``torch.no_grad``;
- the relative property of ``apply_rope`` (a consequence of the rotation the check compares) and the
  shift invariance of ``RotaryMultiHeadAttention``: both follow from the outputs compared here;
- the experiments (previous token, train short / test long): results of training runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autograder.trusted import Case, Check, normal, tensor

ATTENTION = ("scaled_dot_product_attention", "MultiheadAttention")


# ------------------------------------------------------------------------- split/merge heads
def _split_cases(rng):
    return [Case((normal(rng, b, n, h * d_head), h)) for b, n, h, d_head in ((2, 5, 4, 3), (3, 7, 2, 5), (1, 4, 8, 2))]


def _split(case, wrong=False):
    x, h = case.args
    b, n, d = x.shape
    if wrong:
        return [x.reshape(b, n, d // h, h).transpose(0, 3, 1, 2)]
    return [np.stack([x[..., i * (d // h):(i + 1) * (d // h)] for i in range(h)], axis=1)]


def _merge_cases(rng):
    return [Case((normal(rng, b, h, n, d_head),)) for b, h, n, d_head in ((2, 4, 5, 3), (3, 2, 7, 5), (1, 8, 4, 2))]


def _merge(case, wrong=False):
    x = case.args[0]
    b, h, n, d_head = x.shape
    if wrong:
        return [x.reshape(b, n, h * d_head)]
    return [np.concatenate([x[:, i] for i in range(h)], axis=-1)]


# -------------------------------------------------------------------------- MultiHeadAttention
def _linear_state(rng, d: int, bias: bool) -> dict[str, np.ndarray]:
    state = {}
    for name in ("w_q", "w_k", "w_v", "w_o"):
        state[f"{name}.weight"] = normal(rng, d, d, scale=1 / math.sqrt(d))
        if bias:
            state[f"{name}.bias"] = normal(rng, d, scale=0.1)
    return state


def _mha_cases(rng):
    cases = []
    for b, n_q, n_k, d, h, bias, masking in ((2, 5, 5, 16, 4, True, None), (2, 3, 6, 16, 2, True, "random"),
                                             (3, 4, 7, 12, 3, True, "causal"), (4, 6, 6, 8, 2, False, "padding"),
                                             (2, 4, 4, 12, 1, True, "random")):
        query, key, value = normal(rng, b, n_q, d), normal(rng, b, n_k, d), normal(rng, b, n_k, d)
        mask = None
        if masking == "random":          # every query keeps at least one key
            mask = rng.random((b, 1, n_q, n_k)) < 0.7
            mask[..., 0] = True
        elif masking == "causal":        # (n_q, n_k), bottom-right aligned
            mask = np.tril(np.ones((n_q, n_k), dtype=bool), k=n_k - n_q)
        elif masking == "padding":       # (b, 1, 1, n_k): padding masked on the keys
            lengths = rng.integers(1, n_k + 1, size=b)
            mask = (np.arange(n_k)[None, :] < lengths[:, None])[:, None, None, :]
        args = (query, key, value) if mask is None else (query, key, value, mask)
        cases.append(Case(args, init=(d, h) if bias else (d, h, False), state=_linear_state(rng, d, bias),
                          double=True))
    return cases


def _mha_torch(case):
    """torch.nn.MultiheadAttention with the case's weights packed as it stores them."""
    d, h = case.init[:2]
    bias = len(case.init) < 3 or case.init[2]
    theirs = torch.nn.MultiheadAttention(d, h, bias=bias, batch_first=True).double().eval()
    s = {k: tensor(v) for k, v in case.state.items()}
    state = {"in_proj_weight": torch.cat([s["w_q.weight"], s["w_k.weight"], s["w_v.weight"]]),
             "out_proj.weight": s["w_o.weight"]}
    if bias:
        state["in_proj_bias"] = torch.cat([s["w_q.bias"], s["w_k.bias"], s["w_v.bias"]])
        state["out_proj.bias"] = s["w_o.bias"]
    theirs.load_state_dict(state, strict=True)
    query, key, value = (tensor(a) for a in case.args[:3])
    b, n_q, n_k = query.shape[0], query.shape[1], key.shape[1]
    attn_mask = None
    if len(case.args) > 3:          # True = may attend here; True = blocked for PyTorch
        blocked = ~tensor(case.args[3])
        attn_mask = blocked.expand(b, h, n_q, n_k).reshape(b * h, n_q, n_k)
    with torch.no_grad():
        out, weights = theirs(query, key, value, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)
    return [out.numpy(), weights.numpy()]


def _project(x, state, name):
    out = x @ state[f"{name}.weight"].T
    return out + state[f"{name}.bias"] if f"{name}.bias" in state else out


def _heads(x, h):
    b, n, d = x.shape
    return x.reshape(b, n, h, d // h).transpose(0, 2, 1, 3)


def _attend(q, k, v, scale, mask=None, bias=None):
    """Float64 attention over split heads: (output (b, h, n_q, d_head), weights (b, h, n_q, n_k))."""
    scores = q @ k.swapaxes(-1, -2) * scale
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights @ v, weights


def _mha_by_hand(case, scale_by_model=False):
    d, h = case.init[:2]
    query, key, value = case.args[:3]
    q, k, v = (_heads(_project(x, case.state, name), h) for x, name in ((query, "w_q"), (key, "w_k"), (value, "w_v")))
    mask = case.args[3] if len(case.args) > 3 else None
    out, weights = _attend(q, k, v, 1 / math.sqrt(d if scale_by_model else d // h), mask)
    b, _, n_q, _ = out.shape
    return [_project(out.transpose(0, 2, 1, 3).reshape(b, n_q, d), case.state, "w_o"), weights]


# ------------------------------------------------------------------------------------ masks
def _causal_cases(rng):
    sizes = [(4, 4), (2, 5), (3, 8), (1, 6)]
    n_k = int(rng.integers(2, 10))
    return [Case((n_q, n_k)) for n_q, n_k in sizes + [(int(rng.integers(1, n_k)), n_k)]]


def _causal(case, how="bottom-right"):
    n_q, n_k = case.args
    i, j = np.arange(n_q)[:, None], np.arange(n_k)[None, :]
    allowed = {"bottom-right": j <= n_k - n_q + i, "top-left": j <= i, "future": j >= i}[how]
    return [allowed]


def _padding_cases(rng):
    cases = []
    for b, n in ((3, 4), (4, 7), (5, int(rng.integers(2, 10)))):
        lengths = rng.integers(1, n + 1, size=b)
        lengths[0] = n                     # a full sequence
        cases.append(Case((lengths, n)))
    return cases


def _padding(case):
    lengths, n = case.args
    return [np.arange(n)[None, :] < lengths[:, None]]


# ------------------------------------------------------------------------------- sinusoids
def _sinusoid_cases(rng):
    return [Case((6, 8)), Case((int(rng.integers(20, 50)), 16)), Case((3, 2)), Case((20, 32, 100.0)),
            Case((int(rng.integers(5, 30)), 2 * int(rng.integers(2, 12)), float(rng.uniform(50.0, 5000.0))))]


def _sinusoid(case, layout="interleaved"):
    n, d = case.args[:2]
    base = case.args[2] if len(case.args) > 2 else 10000.0
    i, j = np.arange(n)[:, None], np.arange(d // 2)[None, :]
    exponent = (4 * j if layout == "column-exponent" else 2 * j) / d
    angle = i / base ** exponent
    p = np.zeros((n, d))
    if layout == "concatenated":
        p[:, : d // 2], p[:, d // 2:] = np.sin(angle), np.cos(angle)
    else:
        first, second = (np.cos, np.sin) if layout == "swapped" else (np.sin, np.cos)
        p[:, 0::2], p[:, 1::2] = first(angle), second(angle)
    return [p]


# ---------------------------------------------------------------------------- learned table
def _learned_cases(rng):
    cases = []
    for max_len, d, n in ((10, 4, 10), (10, 4, 6), (64, 32, int(rng.integers(1, 64))), (3, 8, 1)):
        cases.append(Case((normal(rng, 2, n, d),), init=(max_len, d),
                          state={"table": normal(rng, max_len, d, scale=0.5)}, double=True))
    return cases


def _learned(case):
    x = case.args[0]
    return [x + case.state["table"][: x.shape[1]]]


# ------------------------------------------------------------------------------------- RoPE
def _rotate(x, positions, base=10000.0, pairing="adjacent"):
    """Float64 RoPE: pair j of the vector at position m turns by m * base^(-2j/d), counterclockwise."""
    d = x.shape[-1]
    angle = np.asarray(positions, dtype=np.float64)[:, None] * base ** (-2.0 * np.arange(d // 2) / d)  # (n, d/2)
    cos, sin = np.cos(angle), np.sin(angle)
    if pairing == "halves":
        first, second = x[..., : d // 2], x[..., d // 2:]
        return np.concatenate((first * cos - second * sin, first * sin + second * cos), axis=-1)
    first, second = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = first * cos - second * sin, first * sin + second * cos
    return out


def _rope_cases(rng):
    cases = []
    for shape, base in (((2, 5, 8), None), ((2, 3, 7, 16), None), ((4, 2), 500.0), ((1, 2, 6, 32), None),
                        ((3, 9, 12), float(rng.uniform(100.0, 20000.0)))):
        n = shape[-2]
        positions = rng.permutation(3 * n)[:n]
        args = (normal(rng, *shape), positions) + (() if base is None else (base,))
        cases.append(Case(args))
    positions = rng.uniform(0.0, 20.0, size=5)           # fractional positions are allowed too
    return cases + [Case((normal(rng, 2, 5, 10), positions))]


def _rope(case, pairing="adjacent", direction=1.0, exponent=1.0):
    x, positions = case.args[:2]
    base = case.args[2] if len(case.args) > 2 else 10000.0
    return [_rotate(x, direction * positions, base ** exponent, pairing)]


# ------------------------------------------------------------------------------------ ALiBi
def _get_slopes(n: int) -> list[float]:
    """ofirpress/attention_with_linear_biases, ``get_slopes``."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _get_slopes(2 * closest)[0::2][: n - closest]


def _slopes_cases(rng):
    others = rng.choice([n for n in range(3, 33) if n not in (4, 8, 16, 32)], size=3, replace=False)
    return [Case((int(n),)) for n in (1, 2, 6, 8, *others)]


def _bias_cases(rng):
    return [Case((n, rng.uniform(0.001, 1.0, size=h))) for n, h in ((4, 2), (7, 3), (int(rng.integers(2, 12)), 8))]


def _bias(case, sign=-1.0):
    n, slopes = case.args
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    return [sign * slopes[:, None, None] * distance]


# ----------------------------------------------------------------- positional attention layers
def _layer_cases(rng, rotary: bool):
    cases = []
    for b, n, d, h, masked in ((2, 5, 16, 4, False), (3, 7, 24, 2, True), (1, 9, 32, 8, True), (2, 6, 24, 6, False)):
        state = _linear_state(rng, d, True)
        x = normal(rng, b, n, d)
        mask = np.tril(np.ones((n, n), dtype=bool)) if masked else None
        cases.append(Case((x,) if mask is None else (x, mask), init=(d, h), state=state, double=True))
        if rotary:
            cases.append(Case((x, mask), {"positions": rng.permutation(3 * n)[:n]}, init=(d, h), state=state,
                              double=True))
    return cases


def _layer_by_hand(case, rope="", alibi="", slopes_of=None):
    """Float64 self-attention with positions. rope: "" (none), "heads" (right), "heads+v", "model";
    alibi: "" (none), "penalty" (right), "bonus" (wrong sign); slopes_of: the head count of the slopes."""
    d, h = case.init
    x = case.args[0]
    mask = case.args[1] if len(case.args) > 1 else None
    n = x.shape[1]
    positions = case.kwargs.get("positions", np.arange(n))
    q, k, v = (_project(x, case.state, name) for name in ("w_q", "w_k", "w_v"))
    if rope == "model":
        q, k = _rotate(q, positions), _rotate(k, positions)
    q, k, v = (_heads(t, h) for t in (q, k, v))
    if rope.startswith("heads"):
        q, k = _rotate(q, positions), _rotate(k, positions)
    if rope == "heads+v":
        v = _rotate(v, positions)
    bias = None
    if alibi:
        slopes = np.array(_get_slopes(slopes_of or h))
        bias = _bias(Case((n, slopes)), sign=-1.0 if alibi == "penalty" else 1.0)[0]
    out, weights = _attend(q, k, v, 1 / math.sqrt(d // h), mask, bias)
    b = x.shape[0]
    return [_project(out.transpose(0, 2, 1, 3).reshape(b, n, d), case.state, "w_o"), weights]


CHECKS = [
    Check("test_split_merge_heads", "split_heads", _split_cases, _split, atol=0, rtol=0,
          mistakes={"wrong head split: view(b, n, d_head, h) gives head i every h-th feature instead of a "
                    "contiguous block": lambda case: _split(case, wrong=True)}),
    Check("test_split_merge_heads", "merge_heads", _merge_cases, _merge, atol=0, rtol=0,
          mistakes={"missing transpose before merging heads: reshape(b, n, h*d_head) on a (b, h, n, d_head) "
                    "tensor mixes different tokens": lambda case: _merge(case, wrong=True)}),
    Check("test_multi_head_attention", "MultiHeadAttention", _mha_cases, _mha_torch, module=True,
          forbidden=ATTENTION, atol=1e-9, rtol=1e-7,
          mistakes={"scaling by 1/sqrt(d_model) instead of 1/sqrt(d_head)":
                    lambda case: _mha_by_hand(case, scale_by_model=True)}),
    Check("test_masks", "causal_mask", _causal_cases, _causal, atol=0, rtol=0,
          mistakes={"causal mask aligned top-left (tril without offset); query i is at position n_k - n_q + i":
                    lambda case: _causal(case, "top-left"),
                    "mask polarity inverted (True means: may attend)": lambda case: [~_causal(case)[0]],
                    "causal mask keeps the future (upper triangle)": lambda case: _causal(case, "future")}),
    Check("test_masks", "padding_mask", _padding_cases, _padding, atol=0, rtol=0,
          mistakes={"padding mask polarity inverted (True marks the real tokens)": lambda case: [~_padding(case)[0]]}),
    Check("test_sinusoidal_encoding", "sinusoidal_encoding", _sinusoid_cases, _sinusoid, atol=1e-5, rtol=0,
          mistakes={"sine and cosine swapped (sin goes on the even columns 2j)":
                    lambda case: _sinusoid(case, "swapped"),
                    "sines and cosines concatenated in two halves instead of interleaved":
                    lambda case: _sinusoid(case, "concatenated"),
                    "frequency exponent uses the column index instead of the pair index j":
                    lambda case: _sinusoid(case, "column-exponent")}),
    Check("test_learned_positional_encoding", "LearnedPositionalEncoding", _learned_cases, _learned, module=True,
          atol=1e-12, rtol=0),
    Check("test_apply_rope", "apply_rope", _rope_cases, _rope, atol=1e-5, rtol=1e-5,
          mistakes={"halves pairing (Hugging Face rotate_half) instead of adjacent pairs (2j, 2j+1)":
                    lambda case: _rope(case, pairing="halves"),
                    "rotation in the wrong direction": lambda case: _rope(case, direction=-1.0),
                    "frequency exponent j/d instead of 2j/d": lambda case: _rope(case, exponent=0.5)}),
    Check("test_alibi", "alibi_slopes", _slopes_cases, lambda case: [np.array(_get_slopes(case.args[0]))],
          atol=0, rtol=1e-6,
          mistakes={"non-power-of-two head count: 2^(-8i/n) is only the rule for n a power of two":
                    lambda case: [2.0 ** (-8.0 * np.arange(1, case.args[0] + 1) / case.args[0])]}),
    Check("test_alibi", "alibi_bias", _bias_cases, _bias, atol=1e-12, rtol=1e-6,
          mistakes={"ALiBi bias with the wrong sign: it is a penalty, -slope * distance":
                    lambda case: _bias(case, sign=1.0)}),
    Check("test_positional_attention", "RotaryMultiHeadAttention", lambda rng: _layer_cases(rng, rotary=True),
          lambda case: _layer_by_hand(case, rope="heads"), module=True, atol=1e-5, rtol=1e-5,
          mistakes={"RoPE applied to v: rotate only the queries and keys":
                    lambda case: _layer_by_hand(case, rope="heads+v"),
                    "RoPE applied before the head split, with the frequencies of d_model":
                    lambda case: _layer_by_hand(case, rope="model"),
                    "no RoPE at all": lambda case: _layer_by_hand(case)}),
    Check("test_positional_attention", "ALiBiMultiHeadAttention", lambda rng: _layer_cases(rng, rotary=False),
          lambda case: _layer_by_hand(case, alibi="penalty"), module=True, atol=1e-7, rtol=1e-6,
          mistakes={"ALiBi bias with the wrong sign (added as a bonus)":
                    lambda case: _layer_by_hand(case, alibi="bonus"),
                    "the same ALiBi slope for every head (alibi_slopes(1))":
                    lambda case: _layer_by_hand(case, alibi="penalty", slopes_of=1),
                    "no ALiBi bias at all": lambda case: _layer_by_hand(case)}),
]
