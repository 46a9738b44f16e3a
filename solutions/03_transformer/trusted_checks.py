"""The grader's own checks of 03_transformer (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel with PyTorch's ``nn.TransformerEncoderLayer`` and
``nn.TransformerDecoderLayer`` (GELU, no dropout, float64, loaded with the grader's weights, whose
names are the blocks' contract) and an independent ``teacher_forcing``. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_greedy_decode`` and ``test_generate_with_cache``: their input is a model (``model.encode``,
  ``model.decode``, its blocks and tables), which the grader cannot send as plain arrays;
- ``test_cached_self_attention``: its inputs are an ``nn.MultiheadAttention`` layer and a cache
  dictionary that the function updates in place over several calls; the layers that use it are
  checked through ``generate_with_cache``'s own test;
- ``test_trained_model``: the result of a training run;
- the dropout of ``EncoderBlock`` in training mode: the kernel answers in eval mode, under
  ``torch.no_grad``; that ``teacher_forcing`` leaves its input unchanged: the kernel answers with what
  the function returns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from autograder.trusted import Case, Check, normal, tensor
from vlmcourse.sequences import BOS, EOS, PAD


def _random_state(rng, module: nn.Module) -> dict[str, np.ndarray]:
    """Fresh weights for ``module``'s state dict (norm weights around 1, biases and the rest around 0)."""
    state = {}
    for key, value in module.state_dict().items():
        scale = 0.3 if value.dim() > 1 else 0.2
        state[key] = normal(rng, *value.shape, scale=scale) + (1.0 if "norm" in key and key.endswith("weight") else 0)
    return state


def _torch_layer(kind: str, d: int, h: int, d_ff: int, norm_first: bool) -> nn.Module:
    layer = {"encoder": nn.TransformerEncoderLayer, "decoder": nn.TransformerDecoderLayer}[kind]
    # train(): dropout is 0, and PyTorch's eval-mode fast path is kept out of the reference
    return layer(d, h, dim_feedforward=d_ff, dropout=0.0, activation="gelu", batch_first=True,
                 norm_first=norm_first).double().train()


def _loaded(module: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    module.load_state_dict({k: tensor(v) for k, v in state.items()}, strict=True)
    return module


def _padding(rng, b: int, n: int) -> np.ndarray:
    """(b, n) bool, True = PAD; every row keeps at least its first token, the first row is full."""
    lengths = rng.integers(1, n + 1, size=b)
    lengths[0] = n
    return np.arange(n)[None, :] >= lengths[:, None]


# ------------------------------------------------------------------------------ EncoderBlock
def _encoder_cases(rng):
    cases = []
    for b, n, d, h, norm_first in ((2, 6, 16, 4, False), (2, 6, 16, 4, True), (3, 9, 24, 3, False),
                                   (4, 5, 32, 8, True)):
        init = (d, h, 2 * d, 0.0, norm_first)
        state = _random_state(rng, _torch_layer("encoder", d, h, 2 * d, norm_first))
        x = normal(rng, b, n, d)
        cases.append(Case((x,), {"key_padding_mask": _padding(rng, b, n)}, init=init, state=state, double=True))
    cases.append(Case((x,), init=init, state=state, double=True))         # no padding at all
    return cases


def _encoder(case, swap_norm=False, ignore_mask=False):
    d, h, d_ff, _, norm_first = case.init
    layer = _loaded(_torch_layer("encoder", d, h, d_ff, norm_first != swap_norm), case.state)
    mask = case.kwargs.get("key_padding_mask")
    with torch.no_grad():
        out = layer(tensor(case.args[0]), src_key_padding_mask=None if mask is None or ignore_mask else tensor(mask))
    return [out.numpy()]


# ------------------------------------------------------------------------------ DecoderBlock
def _decoder_cases(rng):
    cases = []
    for b, n_t, n_s, d, h, norm_first, padded in ((2, 5, 7, 16, 4, True, True), (2, 5, 7, 16, 4, False, True),
                                                  (3, 8, 3, 24, 6, True, True), (1, 4, 9, 32, 2, False, True),
                                                  (2, 6, 4, 16, 2, True, False)):
        init = (d, h, 2 * d, 0.0, norm_first)
        state = _random_state(rng, _torch_layer("decoder", d, h, 2 * d, norm_first))
        kwargs = {"tgt_mask": np.triu(np.ones((n_t, n_t), dtype=bool), k=1)}     # True = blocked (the future)
        if padded:
            kwargs["tgt_key_padding_mask"] = _padding(rng, b, n_t)
            kwargs["memory_key_padding_mask"] = _padding(rng, b, n_s)
        cases.append(Case((normal(rng, b, n_t, d), normal(rng, b, n_s, d)), kwargs, init=init, state=state,
                          double=True))
    return cases


def _decoder(case, swap_norm=False, drop=()):
    """PyTorch's decoder layer, and the per-head weights of its cross-attention (recomputed from the
    inputs its ``multihead_attn`` received). ``drop``: masks left out, for the known mistakes."""
    d, h, d_ff, _, norm_first = case.init
    layer = _loaded(_torch_layer("decoder", d, h, d_ff, norm_first != swap_norm), case.state)
    seen = {}

    def remember(module, args, kwargs):
        seen["query"], seen["memory"] = args[0], args[1]
        seen["key_padding_mask"] = kwargs.get("key_padding_mask")

    hook = layer.multihead_attn.register_forward_pre_hook(remember, with_kwargs=True)
    masks = {k: tensor(v) for k, v in case.kwargs.items() if k not in drop}
    with torch.no_grad():
        out = layer(*(tensor(a) for a in case.args), **masks)
        hook.remove()
        _, weights = layer.multihead_attn(seen["query"], seen["memory"], seen["memory"],
                                          key_padding_mask=seen["key_padding_mask"], need_weights=True,
                                          average_attn_weights=False)
    return [out.numpy(), weights.numpy()]


# --------------------------------------------------------------------------- teacher_forcing
def _forcing_cases(rng):
    cases = []
    for b, longest in ((2, 4), (5, 9), (1, 1), (4, int(rng.integers(2, 12)))):
        lengths = rng.integers(1, longest + 1, size=b)
        lengths[0] = longest
        rows = np.full((b, longest + 2), PAD, dtype=np.int64)
        for i, n in enumerate(lengths):
            rows[i, 0], rows[i, n + 1] = BOS, EOS
            rows[i, 1:n + 1] = rng.integers(3, 40, size=n)
        cases.append(Case((rows,)))
    return cases


def _forcing(case, labels_from=1, ignore=True, inputs="shifted"):
    targets = case.args[0]
    decoder_input = {"shifted": targets[:, :-1], "whole": targets, "after BOS": targets[:, 1:]}[inputs]
    labels = targets[:, 1:] if labels_from == 1 else targets[:, :-1]
    return [decoder_input, np.where(labels == PAD, -100, labels) if ignore else labels]


BLOCKS = ("TransformerEncoderLayer", "TransformerDecoderLayer")

CHECKS = [
    Check("test_encoder_block", "EncoderBlock", _encoder_cases, _encoder, module=True, atol=1e-9, rtol=1e-7,
          forbidden=BLOCKS,
          mistakes={"pre-norm and post-norm swapped": lambda case: _encoder(case, swap_norm=True),
                    "key_padding_mask ignored: padded tokens are attended to":
                    lambda case: _encoder(case, ignore_mask=True)}),
    Check("test_decoder_block", "DecoderBlock", _decoder_cases, _decoder, module=True, attributes=("cross_weights",),
          atol=1e-9, rtol=1e-7, forbidden=BLOCKS,
          mistakes={"causal mask missing in the decoder self-attention":
                    lambda case: _decoder(case, drop=("tgt_mask",)),
                    "memory_key_padding_mask ignored: cross-attention reads the source padding":
                    lambda case: _decoder(case, drop=("memory_key_padding_mask",)),
                    "pre-norm and post-norm swapped": lambda case: _decoder(case, swap_norm=True)}),
    Check("test_teacher_forcing", "teacher_forcing", _forcing_cases, _forcing, atol=0, rtol=0,
          mistakes={"labels not shifted: they must be the NEXT tokens, targets[:, 1:]":
                    lambda case: _forcing(case, labels_from=0),
                    "padding not ignored in the labels: replace PAD by -100": lambda case: _forcing(case, ignore=False),
                    "decoder input is the whole target: drop the last column":
                    lambda case: _forcing(case, inputs="whole"),
                    "decoder input shifted the wrong way (starts after BOS)":
                    lambda case: _forcing(case, inputs="after BOS")}),
]
