"""The grader's own checks of 12_flamingo (autograder/trusted.py): fresh inputs and weights, references
computed outside the learner's kernel: PyTorch's ``nn.MultiheadAttention`` loaded with the grader's
weights for the Perceiver attention, the resampler and the gated cross-attention block written out in
float64 (the block's masked attention head by head, as the notebook's own test does), the media mask
by counting the images token by token. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``feed_forward``: it is given, not written by the learner, and returns a module, not an output; its
  parameters (``ff.0`` LayerNorm, ``ff.1`` and ``ff.3`` Linear) are part of the state dicts the grader
  loads strictly into ``PerceiverResampler`` and ``GatedCrossAttentionBlock``;
- ``test_flamingo_model``: ``Flamingo``'s constructor takes a language model (a ``TinyLM`` module),
  which the grader's plain constructor arguments cannot carry, and what the test checks is about
  parameters and gradients (the LM frozen, no gradient reaching it, the model equal to the LM at
  initialisation); the kernel answers under ``torch.no_grad``. Its parts are checked here;
- the training and the few-shot accuracies: the result of a training run;
- ``test_design_choices``: the result of training runs as well (section 8: the media-mask ablation and
  the frozen LM's text-only loss against an unfrozen one's).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autograder.trusted import Case, Check, attention_state, layer_norm_state, normal, tensor


def _layer_norm(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)


def _ff_state(rng, d: int, prefix: str) -> dict[str, np.ndarray]:
    """feed_forward(d): LayerNorm (0), Linear d -> 4d (1), GELU (2), Linear 4d -> d (3)."""
    return {**layer_norm_state(rng, d, f"{prefix}.0"),
            f"{prefix}.1.weight": normal(rng, 4 * d, d, scale=0.3), f"{prefix}.1.bias": normal(rng, 4 * d, scale=0.2),
            f"{prefix}.3.weight": normal(rng, d, 4 * d, scale=0.2), f"{prefix}.3.bias": normal(rng, d, scale=0.2)}


def _ff(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    hidden = F.gelu(_layer_norm(x, state, f"{prefix}.0") @ state[f"{prefix}.1.weight"].T + state[f"{prefix}.1.bias"])
    return hidden @ state[f"{prefix}.3.weight"].T + state[f"{prefix}.3.bias"]


def _mha(state: dict, prefix: str, heads: int) -> nn.MultiheadAttention:
    """PyTorch's nn.MultiheadAttention in float64 with the grader's weights."""
    d = state[f"{prefix}.out_proj.weight"].shape[0]
    attn = nn.MultiheadAttention(d, heads, batch_first=True).double().eval()
    attn.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}, strict=True)
    return attn


# ------------------------------------------------------------------------ PerceiverAttention
def _perceiver_attention(media, latents, state, prefix, heads, kv="both", norm_latents=True, norm_media=True):
    """Latents (normalised) attend to concat([norm_media(media), norm_latents(latents)])."""
    m = _layer_norm(media, state, f"{prefix}.norm_media") if norm_media else media
    q = _layer_norm(latents, state, f"{prefix}.norm_latents") if norm_latents else latents
    keys_values = torch.cat([m, q], dim=1) if kv == "both" else m
    with torch.no_grad():
        return _mha(state, f"{prefix}.attn", heads)(q, keys_values, keys_values, need_weights=False)[0]


def _attention_cases(rng):
    cases = []
    for b, n, r, d, heads in ((2, 9, 4, 16, 2), (3, 5, 7, 12, 3), (1, 12, 2, 8, 1)):
        state = {**layer_norm_state(rng, d, "norm_media"), **layer_norm_state(rng, d, "norm_latents"),
                 **attention_state(rng, d, "attn")}
        media = normal(rng, b, n, d, scale=2.0) + normal(rng, d)       # off centre: the norms matter
        latents = normal(rng, b, r, d, scale=3.0) + normal(rng, d)
        cases.append(Case((media, latents), init=(d, heads), state=state, double=True))
    return cases


def _attention_reference(case, **wrong):
    state = {k: tensor(v) for k, v in case.state.items()}
    media, latents = (tensor(a) for a in case.args)
    prefixed = {f"p.{k}": v for k, v in state.items()}
    return [_perceiver_attention(media, latents, prefixed, "p", case.init[1], **wrong).numpy()]


# ------------------------------------------------------------------------ PerceiverResampler
def _resampler_cases(rng):
    cases = []
    for b, t, s, d, r, depth, heads, max_frames in ((2, 2, 9, 16, 4, 2, 2, 3), (3, 1, 5, 8, 6, 1, 1, 4),
                                                    (1, 3, 4, 12, 2, 3, 3, 4)):
        state = {"latents": normal(rng, r, d), "time_emb": normal(rng, max_frames, 1, d)}
        for i in range(depth):
            state.update({**layer_norm_state(rng, d, f"layers.{i}.0.norm_media"),
                          **layer_norm_state(rng, d, f"layers.{i}.0.norm_latents"),
                          **attention_state(rng, d, f"layers.{i}.0.attn"), **_ff_state(rng, d, f"layers.{i}.1")})
        state.update(layer_norm_state(rng, d, "norm"))
        cases.append(Case((normal(rng, b, t, s, d),), init=(d, r, depth, heads, max_frames), state=state, double=True))
    return cases


def _resampler(case, time=True, residual=True, kv="both"):
    _, _, depth, heads, _ = case.init
    state = {k: tensor(v) for k, v in case.state.items()}
    x = tensor(case.args[0])
    b, t, s, d = x.shape
    features = (x + state["time_emb"][:t] if time else x).reshape(b, t * s, d)
    latents = state["latents"].expand(b, -1, -1)
    for i in range(depth):
        latents = (latents if residual else 0) + _perceiver_attention(features, latents, state, f"layers.{i}.0",
                                                                       heads, kv=kv)
        latents = (latents if residual else 0) + _ff(latents, state, f"layers.{i}.1")
    return [_layer_norm(latents, state, "norm").numpy()]


# ----------------------------------------------------------------------- media_attention_mask
def _locations(rng, b: int, length: int, p: float) -> np.ndarray:
    """<image> positions: random, the first token never one, an image at the second token of the first
    row, and (with more than one row) a row without any image."""
    locations = rng.random((b, length)) < p
    locations[:, 0] = False
    locations[0, 1] = True
    if b > 1:
        locations[-1] = False
    return locations


def _mask_cases(rng):
    cases = [Case((np.array([[0, 1, 0, 0, 1, 0, 0, 1]], dtype=bool), 3)),      # <bos> <image> red . <image> ...
             Case((np.array([[1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0]], dtype=bool), 3))]  # two images in a row
    for b, length, p in ((4, 13, 0.25), (3, 20, 0.4)):
        locations = _locations(rng, b, length, p)
        cases.append(Case((locations, int(locations.sum(1).max()) + int(rng.integers(0, 3)))))
    return cases


def _media_mask(locations: np.ndarray, num_media: int, shift: int = 0, upto: bool = False) -> np.ndarray:
    """Token by token: the index of the most recent image (the <image> token's own included)."""
    b, length = locations.shape
    out = np.zeros((b, length, num_media), dtype=bool)
    for row in range(b):
        seen = 0
        for i in range(length):
            seen += int(locations[row, i])
            last = seen - 1 + shift                                      # -1: no image yet
            for j in range(num_media):
                out[row, i, j] = (0 <= j <= last) if upto else (j == last)
    return out


# ------------------------------------------------------------------ GatedCrossAttentionBlock
def _gated_cases(rng):
    cases = []
    for b, length, m, r, d, heads, gates in ((2, 7, 2, 3, 16, 2, (0.8, -0.6)), (3, 11, 3, 2, 24, 4, (1.5, 0.9)),
                                             (2, 5, 1, 5, 8, 1, tuple(rng.uniform(-2, 2, size=2)))):
        state = {"attn_gate": np.array(gates[0]), "ff_gate": np.array(gates[1]), **layer_norm_state(rng, d, "norm"),
                 **attention_state(rng, d, "attn"), **_ff_state(rng, d, "ff")}
        mask = _media_mask(_locations(rng, b, length, 0.3), m)
        args = (normal(rng, b, length, d), normal(rng, b, m, r, d), mask)
        cases.append(Case(args, init=(d, heads), state=state, double=True))
    x, media = normal(rng, 2, 6, 8), normal(rng, 2, 2, 3, 8)
    mask = _media_mask(_locations(rng, 1, 6, 0.3).repeat(2, axis=0), 2)     # images in both rows
    return cases + [Case((x, media, mask), init=(8, 2), double=True)]   # as the constructor made it: gates at 0


def _gated(case, squash=torch.tanh, squash_ff=None):
    if not case.state:                   # gates at 0: the block is the identity, whatever its weights
        return [case.args[0]]
    _, heads = case.init
    state = {k: tensor(v) for k, v in case.state.items()}
    x, media, mask = (tensor(a) for a in case.args)
    b, m, r, d = media.shape
    dh = d // heads
    w_q, w_k, w_v = state["attn.in_proj_weight"].chunk(3)
    b_q, b_k, b_v = state["attn.in_proj_bias"].chunk(3)
    kv = media.reshape(b, m * r, d)
    q = (_layer_norm(x, state, "norm") @ w_q.T + b_q).view(b, -1, heads, dh).transpose(1, 2)  # (b, h, L, dh)
    k = (kv @ w_k.T + b_k).view(b, -1, heads, dh).transpose(1, 2)                            # (b, h, m*R, dh)
    v = (kv @ w_v.T + b_v).view(b, -1, heads, dh).transpose(1, 2)
    allowed = mask.repeat_interleave(r, dim=2)[:, None]                                       # (b, 1, L, m*R)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~allowed, float("-inf"))
    weights = torch.nan_to_num(scores.softmax(dim=-1), nan=0.0)                               # no image: 0
    attended = (weights @ v).transpose(1, 2).reshape(b, -1, d)
    attended = (attended @ state["attn.out_proj.weight"].T + state["attn.out_proj.bias"]) * allowed[:, 0].any(-1, True)
    x = x + squash(state["attn_gate"]) * attended
    return [(x + (squash_ff or squash)(state["ff_gate"]) * _ff(x, state, "ff")).numpy()]


def _identity(gate):
    return gate


CHECKS = [
    Check("test_perceiver_attention", "PerceiverAttention", _attention_cases, _attention_reference, module=True,
          atol=1e-9, rtol=1e-7,
          mistakes={"keys/values from the visual features only: they must be concat([media, latents]) along the "
                    "tokens": lambda case: _attention_reference(case, kv="media"),
                    "latents not normalised with norm_latents":
                    lambda case: _attention_reference(case, norm_latents=False),
                    "inputs not layer-normalised":
                    lambda case: _attention_reference(case, norm_latents=False, norm_media=False)}),
    Check("test_perceiver_resampler", "PerceiverResampler", _resampler_cases, _resampler, module=True,
          atol=1e-9, rtol=1e-7,
          mistakes={"time embeddings not added to the visual features": lambda case: _resampler(case, time=False),
                    "residual connections missing: latents = latents + attention(...), latents = latents + ffw(...)":
                    lambda case: _resampler(case, residual=False),
                    "keys/values from the visual features only: they must be concat([media, latents]) along the "
                    "tokens": lambda case: _resampler(case, kv="media")}),
    Check("test_media_attention_mask", "media_attention_mask", _mask_cases,
          lambda case: [_media_mask(*case.args)], atol=0, rtol=0,
          mistakes={"media mask off by one: a token attends to the image after the one that precedes it":
                    lambda case: [_media_mask(*case.args, shift=1)],
                    "media mask off by one: a token attends to the image before the one that precedes it "
                    "(the <image> token must see its own image)": lambda case: [_media_mask(*case.args, shift=-1)],
                    "every previous image is visible: Flamingo attends only to the image just before":
                    lambda case: [_media_mask(*case.args, upto=True)]}),
    Check("test_gated_cross_attention", "GatedCrossAttentionBlock", _gated_cases, _gated, module=True,
          atol=1e-9, rtol=1e-7,
          mistakes={"missing tanh on the gates: use x + tanh(gate) * update":
                    lambda case: _gated(case, squash=_identity),
                    "missing tanh on the cross-attention gate: use x + tanh(attn_gate) * attention":
                    lambda case: _gated(case, squash=_identity, squash_ff=torch.tanh),
                    "missing tanh on the feed-forward gate: use x + tanh(ff_gate) * ff(x)":
                    lambda case: _gated(case, squash_ff=_identity)}),
]
