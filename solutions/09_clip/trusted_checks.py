"""The grader's own checks of 09_clip (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel with open_clip's ``ClipLoss`` and ``text_global_pool`` (a direct formula
where open_clip is missing) and PyTorch's own Transformer layers. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_CLIP``: its constructor takes two encoder modules, and what it checks (a learnable 0-dim
  log-scale, normalised outputs) is about the module's parameters, not an output of plain inputs;
- ``test_zero_shot_weights``: its inputs are a text encoder (a callable) and a tokenizer;
- ``test_trained_clip``: the result of training (recall, zero-shot accuracy).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autograder.trusted import Case, Check, normal, tensor

try:
    from open_clip.loss import ClipLoss
    from open_clip.transformer import text_global_pool
except ImportError:                     # the same formulas, written out
    ClipLoss = None

    def text_global_pool(x, text, pool_type, eos_token_id=None):
        if pool_type in ("first", "last"):
            return x[:, 0 if pool_type == "first" else -1]
        index = text.argmax(dim=-1) if pool_type == "argmax" else (text == eos_token_id).int().argmax(dim=-1)
        return x[torch.arange(x.shape[0]), index]


# ------------------------------------------------------------------------------- clip_logits
def _logits_cases(rng):
    cases = []
    for n, m, d, scale, max_scale in ((5, 5, 8, 1 / 0.07, None), (7, 3, 4, math.exp(1.3), None),
                                      (4, 6, 5, 1000.0, None), (3, 3, 6, 50.0, 10.0)):
        args = (normal(rng, n, d, scale=3.0), normal(rng, m, d, scale=2.0), np.array(math.log(scale)))
        cases.append(Case(args, {} if max_scale is None else {"max_scale": max_scale}))
    return cases


def _logits(case, normalise=True, exponentiate=True, clamp=True, power=1):
    img, txt, t = (tensor(a) for a in case.args)
    if normalise:
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    scale = t.exp() if exponentiate else t
    if clamp:
        scale = scale.clamp(max=case.kwargs.get("max_scale", 100.0))
    per_image = scale ** power * img @ txt.T
    return [per_image.numpy(), per_image.T.numpy()]


# --------------------------------------------------------------------------------- clip_loss
def _loss_cases(rng):
    cases = []
    for n, d, t in ((6, 8, math.log(1 / 0.07)), (9, 5, 0.5), (9, 5, 3.0), (8, 16, 5.0)):
        img, txt = normal(rng, n, d, scale=2.0), normal(rng, n, d)
        img[: n // 3] += 3 * txt[: n // 3]          # some aligned pairs, so that the two directions differ
        cases.append(Case((img, txt, np.array(t))))
    return cases


def _open_clip_loss(img, txt, scale):
    """open_clip's loss on normalised (or not) features and the exponentiated scale."""
    if ClipLoss is not None:
        return ClipLoss()(img, txt, scale)
    labels = torch.arange(img.shape[0])
    logits = scale * img @ txt.T
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _loss(case, normalise=True, exponentiate=True, factor=1.0):
    img, txt, t = (tensor(a) for a in case.args)
    if normalise:
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    scale = (t.exp() if exponentiate else t).clamp(max=100.0)
    return [(factor * _open_clip_loss(img, txt, scale)).numpy()]


def _one_direction(case, images_first: bool):
    img, txt, t = (tensor(a) for a in case.args)
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = t.exp().clamp(max=100.0) * (img @ txt.T if images_first else txt @ img.T)
    return [F.cross_entropy(logits, torch.arange(img.shape[0])).numpy()]


# ---------------------------------------------------------------------------------- eot_pool
def _tokens(rng, batch: int, length: int, eos_id: int, low: int, high: int, pad: bool) -> np.ndarray:
    """Token rows in [low, high) (eos_id below them, so it is not the largest id), each with an
    end-of-text token, padding (0) after it when ``pad``, and a second end-of-text token in one row."""
    tokens = rng.integers(low, high, size=(batch, length))
    ends = rng.integers(1, length - 1, size=batch)
    for row, end in enumerate(ends):
        tokens[row, end] = eos_id
        if pad:
            tokens[row, end + 1:] = 0
    tokens[0, -1] = eos_id                       # a second one: the first counts
    return tokens.astype(np.int64)


def _pool_cases(rng):
    cases = []
    for batch, length, d, eos_id in ((3, 10, 6, 2), (5, 9, 3, 7)):
        tokens = _tokens(rng, batch, length, eos_id, low=eos_id + 1, high=40, pad=eos_id == 2)
        cases.append(Case((normal(rng, batch, length, d), tokens, eos_id)))
    return cases


def _pool(case, pool_type="eos"):
    hidden, tokens, eos_id = tensor(case.args[0]), tensor(case.args[1]), case.args[2]
    return [text_global_pool(hidden, tokens, pool_type, eos_token_id=eos_id).numpy()]


# ------------------------------------------------------------------------------- TextEncoder
def _reference_text_encoder(vocab_size, context_length, width, layers, heads, embed_dim, eos_id) -> nn.Module:
    """The exercise's architecture from PyTorch's own layers; its parameter names are the contract."""
    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, width)
            self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
            block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.ln_final = nn.LayerNorm(width)
            self.text_projection = nn.Linear(width, embed_dim, bias=False)

    return Reference().double().eval()


def _text_encoder_cases(rng):
    cases = []
    for vocab, context, width, layers, heads, embed, eos_id, batch, length in (
            (40, 16, 16, 2, 4, 8, 2, 3, 12), (50, 20, 24, 1, 2, 8, 9, 4, 12)):
        init = (vocab, context, width, layers, heads, embed, eos_id)
        shapes = {k: tuple(v.shape) for k, v in _reference_text_encoder(*init).state_dict().items()}
        state = {k: normal(rng, *shape, scale=0.3) + (1.0 if k.endswith(("norm1.weight", "norm2.weight",
                                                                         "ln_final.weight")) else 0.0)
                 for k, shape in shapes.items()}
        tokens = _tokens(rng, batch, length, eos_id, low=max(eos_id + 1, 3), high=vocab, pad=True)
        cases.append(Case((tokens,), init=init, state=state, double=True))
    return cases


def _text_encoder(case, causal: bool = True):
    model = _reference_text_encoder(*case.init)
    model.load_state_dict({k: tensor(v) for k, v in case.state.items()}, strict=True)
    tokens = tensor(case.args[0])
    n = tokens.shape[1]
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.positional_embedding[:n]
        mask = nn.Transformer.generate_square_subsequent_mask(n, dtype=torch.float64)
        for layer in model.transformer.layers:
            x = layer(x, src_mask=mask, is_causal=True) if causal else layer(x)
        x = model.ln_final(x)
        pooled = text_global_pool(x, tokens, "eos", eos_token_id=case.init[-1])
        return [model.text_projection(pooled).numpy()]


# ------------------------------------------------------------------------------- recall_at_k
def _recall_cases(rng):
    cases = []
    for n, k in ((20, 1), (20, 5), (33, 3), (33, 10)):
        similarity = normal(rng, n, n) + np.diag(np.linspace(0, 3, n))
        similarity[:, int(rng.integers(n))] += 2.0      # a "hub" text: rows and columns differ
        cases.append(Case((similarity, k)))
    return cases


def _recall(case):
    similarity, k = case.args
    diagonal = np.diag(similarity)
    image_to_text = ((similarity > diagonal[:, None]).sum(axis=1) < k).mean()
    text_to_image = ((similarity > diagonal[None, :]).sum(axis=0) < k).mean()
    return [np.array(image_to_text), np.array(text_to_image)]


CHECKS = [
    Check("test_clip_logits", "clip_logits", _logits_cases, _logits,
          mistakes={"features not normalised": lambda case: _logits(case, normalise=False),
                    "temperature not exponentiated": lambda case: _logits(case, exponentiate=False),
                    "temperature applied twice": lambda case: _logits(case, power=2),
                    "scale not clamped at max_scale": lambda case: _logits(case, clamp=False)}),
    Check("test_clip_loss", "clip_loss", _loss_cases, _loss, forbidden=("ClipLoss",),
          mistakes={"loss not symmetric (only the image->text cross-entropy)":
                    lambda case: _one_direction(case, images_first=True),
                    "loss not symmetric (only the text->image cross-entropy)":
                    lambda case: _one_direction(case, images_first=False),
                    "sum of the two cross-entropies instead of their average": lambda case: _loss(case, factor=2.0),
                    "features not normalised": lambda case: _loss(case, normalise=False),
                    "temperature not exponentiated": lambda case: _loss(case, exponentiate=False)}),
    Check("test_eot_pool", "eot_pool", _pool_cases, _pool, forbidden=("text_global_pool",),
          mistakes={"pooled at the last position (padding!) instead of the end-of-text token":
                    lambda case: _pool(case, "last"),
                    "pooled at the first position (the <bos> token)": lambda case: _pool(case, "first"),
                    "pooled at the largest token id (our <eos> is not the largest id)":
                    lambda case: _pool(case, "argmax")}),
    Check("test_TextEncoder", "TextEncoder", _text_encoder_cases, _text_encoder, module=True,
          mistakes={"text encoder without the causal mask": lambda case: _text_encoder(case, causal=False)}),
    Check("test_recall_at_k", "recall_at_k", _recall_cases, _recall,
          mistakes={"the two directions swapped (rows are images, columns texts)":
                    lambda case: _recall(case)[::-1],
                    "a count instead of a fraction": lambda case: [r * case.args[0].shape[0] for r in _recall(case)]}),
]
