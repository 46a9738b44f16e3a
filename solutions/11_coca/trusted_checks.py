"""The grader's own checks of 11_coca (autograder/trusted.py): fresh inputs and weights, references
computed outside the learner's kernel with open_clip's ``AttentionalPooler`` (then the layer norm the
exercise adds) and ``CoCaLoss``, and the unimodal decoder written out in float64 from
``torch.nn.functional`` (embedding, CLS appended at the end, pre-norm layers whose attention is written
out head by head). Where open_clip is missing, the same formulas written out. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- the ``CoCa`` model and its training: it is not an exercise, and what the notebook measures
  (captions, retrieval) is the result of a training run;
- ``test_coca_ablation``: the result of three training runs (contrastive only, captioning only, joint).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from autograder.trusted import Case, Check, attention_state, layer_norm_state, normal, tensor

try:
    from open_clip.loss import CoCaLoss
    from open_clip.transformer import AttentionalPooler
except ImportError:                     # the same formulas, written out below
    CoCaLoss = AttentionalPooler = None

PAD_ID = 0                              # the course tokenizer's <pad> (vlmcourse.world), the notebook's PAD_ID


def _layer_norm(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)


def _attention(q_in: torch.Tensor, kv_in: torch.Tensor, state: dict, prefix: str, heads: int,
               blocked: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ...),
    written out: ``blocked`` (b, n_q, n_k) True where a query may not attend."""
    w_q, w_k, w_v = state[f"{prefix}.in_proj_weight"].chunk(3)
    b_q, b_k, b_v = state[f"{prefix}.in_proj_bias"].chunk(3)
    b, n_q, d = q_in.shape

    def split(x):                       # (b, n, d) -> (b, heads, n, d / heads)
        return x.reshape(b, x.shape[1], heads, d // heads).transpose(1, 2)

    q, k, v = split(q_in @ w_q.T + b_q), split(kv_in @ w_k.T + b_k), split(kv_in @ w_v.T + b_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d // heads)
    if blocked is not None:
        scores = scores.masked_fill(blocked[:, None], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n_q, d)
    return out @ state[f"{prefix}.out_proj.weight"].T + state[f"{prefix}.out_proj.bias"]


# ------------------------------------------------------------------------ AttentionalPooling
def _pooling_cases(rng):
    cases = []
    for b, n, d, heads, queries in ((2, 9, 16, 2, 1), (3, 5, 12, 3, 6), (1, 16, 8, 1, int(rng.integers(2, 5)))):
        state = {"query": normal(rng, queries, d), **attention_state(rng, d, "attn")}
        for name in ("ln_q", "ln_k", "ln_out"):
            state.update(layer_norm_state(rng, d, name))
        x = normal(rng, b, n, d, scale=3.0) + normal(rng, d)          # tokens off centre: ln_k matters
        cases.append(Case((x,), init=(d, heads, queries), state=state, double=True))
    return cases


def _pooling(case, ln_q=True, ln_k=True, ln_out=True):
    d, heads, queries = case.init
    state = {k: tensor(v) for k, v in case.state.items()}
    x = tensor(case.args[0])
    if AttentionalPooler is not None and ln_q and ln_k:               # open_clip's pooler, then ln_out
        pooler = AttentionalPooler(d, d, n_head=heads, n_queries=queries).double().eval()
        pooler.load_state_dict({k: v for k, v in state.items() if not k.startswith("ln_out")}, strict=True)
        with torch.no_grad():
            out = pooler(x)
    else:
        query = _layer_norm(state["query"], state, "ln_q") if ln_q else state["query"]
        keys = _layer_norm(x, state, "ln_k") if ln_k else x
        out = _attention(query.expand(x.shape[0], -1, -1), keys, state, "attn", heads)
    return [(_layer_norm(out, state, "ln_out") if ln_out else out).numpy()]


# --------------------------------------------------------------------------- UnimodalDecoder
def _decoder_state(rng, vocab: int, d: int, layers: int, max_len: int) -> dict[str, np.ndarray]:
    state = {"tok_emb.weight": normal(rng, vocab, d), "cls_emb": normal(rng, d),
             "pos_emb": normal(rng, max_len + 1, d, scale=0.5)}
    for i in range(layers):
        p = f"layers.{i}"
        state.update(attention_state(rng, d, f"{p}.self_attn"))
        state.update({f"{p}.linear1.weight": normal(rng, 4 * d, d, scale=0.3),
                      f"{p}.linear1.bias": normal(rng, 4 * d, scale=0.2),
                      f"{p}.linear2.weight": normal(rng, d, 4 * d, scale=0.2),
                      f"{p}.linear2.bias": normal(rng, d, scale=0.2)})
        state.update(layer_norm_state(rng, d, f"{p}.norm1"))
        state.update(layer_norm_state(rng, d, f"{p}.norm2"))
    state.update(layer_norm_state(rng, d, "ln_cls"))
    return state


def _decoder_cases(rng):
    cases = []
    for b, length, d, heads, layers, vocab in ((3, 6, 16, 2, 2, 40), (4, 9, 8, 1, 1, 30), (2, 5, 12, 4, 2, 25)):
        max_len = length + int(rng.integers(0, 4))
        ids = rng.integers(6, vocab, size=(b, length))
        lengths = rng.integers(2, length, size=b)                      # right-padded rows
        lengths[0] = length                                            # and one without padding
        ids[np.arange(length)[None] >= lengths[:, None]] = PAD_ID
        cases.append(Case((ids.astype(np.int64),), init=(vocab, d, heads, layers, max_len, PAD_ID),
                          state=_decoder_state(rng, vocab, d, layers, max_len), double=True))
    return cases


def _decoder(case, prepend=False, cls_sees_padding=False):
    _, d, heads, layers, _, pad_id = case.init
    state = {k: tensor(v) for k, v in case.state.items()}
    ids = tensor(case.args[0])
    b, length = ids.shape
    cls = state["cls_emb"].expand(b, 1, d)
    x = F.embedding(ids, state["tok_emb.weight"])
    x = torch.cat([cls, x] if prepend else [x, cls], dim=1) + state["pos_emb"][: length + 1]
    blocked = torch.ones(length + 1, length + 1, dtype=torch.bool).triu(1).expand(b, -1, -1).clone()
    if not cls_sees_padding:
        blocked[:, -1, :length] |= ids == pad_id                       # the CLS (last) ignores padding keys
    for i in range(layers):
        p = f"layers.{i}"
        y = _layer_norm(x, state, f"{p}.norm1")
        x = x + _attention(y, y, state, f"{p}.self_attn", heads, blocked)
        y = _layer_norm(x, state, f"{p}.norm2")
        hidden = F.gelu(y @ state[f"{p}.linear1.weight"].T + state[f"{p}.linear1.bias"])
        x = x + hidden @ state[f"{p}.linear2.weight"].T + state[f"{p}.linear2.bias"]
    return [x[:, :-1].numpy(), _layer_norm(x[:, -1], state, "ln_cls").numpy()]


# --------------------------------------------------------------------------------- coca_loss
def _loss_cases(rng):
    cases = []
    for b, d, length, vocab, scale in ((4, 8, 7, 20, math.log(1 / 0.07)), (7, 5, 5, 11, 0.5),
                                       (6, 16, 10, 30, 3.0), (3, 6, 6, 15, float(rng.uniform(1.0, 4.0)))):
        img, txt = normal(rng, b, d, scale=3.0), normal(rng, b, d, scale=2.0)
        img[: b // 2] += 2 * txt[: b // 2]                             # some aligned pairs: the directions differ
        text = rng.integers(6, vocab, size=(b, length))
        text[:, 0] = 1                                                 # <bos>
        lengths = rng.integers(3, length + 1, size=b)                  # every row predicts at least two tokens
        text[np.arange(length)[None] >= lengths[:, None]] = PAD_ID
        text[0, -2:] = PAD_ID                                          # padding in some row, whatever was drawn
        logits = normal(rng, b, length, vocab, scale=2.0)
        cases.append(Case((img, txt, logits, text.astype(np.int64), np.array(scale)), {"pad_id": PAD_ID}))
    return cases


def _coca_loss(img, txt, logits, labels, scale, pad_id, caption_weight, contrastive_weight):
    """open_clip's CoCaLoss: (weighted contrastive, weighted caption) on the features given."""
    if CoCaLoss is not None:
        return CoCaLoss(caption_loss_weight=caption_weight, clip_loss_weight=contrastive_weight,
                        pad_id=pad_id)(img, txt, logits, labels, scale)
    similarity = scale * img @ txt.T
    targets = torch.arange(img.shape[0])
    contrastive = (F.cross_entropy(similarity, targets) + F.cross_entropy(similarity.T, targets)) / 2
    caption = F.cross_entropy(logits.permute(0, 2, 1), labels, ignore_index=pad_id)
    return contrastive_weight * contrastive, caption_weight * caption


def _loss(case, normalise_image=True, normalise_text=True, exponentiate=True, shift=True, ignore_padding=True,
          swap_weights=False):
    img, txt, logits, text, t = (tensor(a) for a in case.args)
    pad_id = case.kwargs.get("pad_id", PAD_ID)
    img = F.normalize(img, dim=-1) if normalise_image else img
    txt = F.normalize(txt, dim=-1) if normalise_text else txt
    logits, labels = (logits[:, :-1], text[:, 1:]) if shift else (logits, text)
    weights = (1.0, 2.0) if swap_weights else (2.0, 1.0)
    contrastive, caption = _coca_loss(img, txt, logits, labels, t.exp() if exponentiate else t,
                                      pad_id if ignore_padding else -100, *weights)
    return [(contrastive + caption).numpy(), contrastive.numpy(), caption.numpy()]


CHECKS = [
    Check("test_attentional_pooling", "AttentionalPooling", _pooling_cases, _pooling, module=True,
          forbidden=("AttentionalPooler",), atol=1e-9, rtol=1e-7,
          mistakes={"layer norm after the attention missing (ln_out)": lambda case: _pooling(case, ln_out=False),
                    "queries not normalised with ln_q": lambda case: _pooling(case, ln_q=False),
                    "image tokens not normalised with ln_k": lambda case: _pooling(case, ln_k=False)}),
    Check("test_unimodal_decoder", "UnimodalDecoder", _decoder_cases, _decoder, module=True, atol=1e-9, rtol=1e-7,
          mistakes={"CLS token prepended at the start: CoCa appends it at the END (the last position sees the "
                    "whole text)": lambda case: _decoder(case, prepend=True),
                    "the CLS attends to padding: block its attention to the pad keys":
                    lambda case: _decoder(case, cls_sees_padding=True)}),
    Check("test_coca_loss", "coca_loss", _loss_cases, _loss, forbidden=("CoCaLoss", "ClipLoss"), atol=1e-9, rtol=1e-7,
          mistakes={"features not normalised before the similarity":
                    lambda case: _loss(case, normalise_image=False, normalise_text=False),
                    "text features not normalised before the similarity":
                    lambda case: _loss(case, normalise_text=False),
                    "image features not normalised before the similarity":
                    lambda case: _loss(case, normalise_image=False),
                    "logit_scale not exponentiated": lambda case: _loss(case, exponentiate=False),
                    "weights swapped: contrastive 2.0, caption 1.0 (use caption 2.0, contrastive 1.0)":
                    lambda case: _loss(case, swap_weights=True),
                    "padding not ignored in the caption loss (ignore_index=pad_id)":
                    lambda case: _loss(case, ignore_padding=False),
                    "caption loss not shifted: logits[:, :-1] must predict text[:, 1:]":
                    lambda case: _loss(case, shift=False)}),
]
