"""The grader's own checks of 05_vit (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel with PyTorch's ``F.unfold`` and timm's Vision Transformer
(``timm.layers.PatchEmbed``, ``timm.models.vision_transformer``: ``Attention``, ``Block``,
``VisionTransformer`` and its ``_pos_embed``), loaded with the grader's weights strictly.
Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_vit_accuracy``: the result of training (test accuracy of the trained ViT);
- ``test_patch_size_tradeoff``: the result of training at three patch sizes (CPU time and test
  accuracy of each run);
- how ``ViT`` initialises ``cls_token`` and ``pos_embed`` (small values): the check loads its own
  weights into the module, so it checks what the module computes, not how it starts;
- that ``attn_weights`` are stored detached: the kernel answers under ``torch.no_grad``.
"""

from __future__ import annotations

from functools import partial

import einops
import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed as TimmPatchEmbed
from timm.models import vision_transformer as timm_vit
from torch import nn

from autograder.trusted import Case, Check, normal, random_state, tensor


def _loaded(module: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    module = module.double().eval()
    module.load_state_dict({k: tensor(v) for k, v in state.items()}, strict=True)
    return module


def _run(module: nn.Module, *args: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(*(tensor(a) for a in args)).numpy()


# ---------------------------------------------------------------------------------- patchify
def _patchify_cases(rng):
    return [Case((normal(rng, *shape), p)) for shape, p in
            (((2, 3, 8, 12), 4), ((2, 3, 6, 9), 3), ((1, 2, 4, 4), 1), ((3, 1, 10, 5), 5))]


def _patchify(case):
    x, p = case.args
    return [F.unfold(tensor(x), p, stride=p).transpose(1, 2).numpy()]


def _rearranged(pattern):
    return lambda case: [einops.rearrange(case.args[0], "b c (h p1) (w p2) -> " + pattern,
                                          p1=case.args[1], p2=case.args[1])]


def _patchify_reshaped(case):
    x, p = case.args
    b, c, height, width = x.shape
    return [x.reshape(b, (height // p) * (width // p), c * p * p)]


# -------------------------------------------------------------------------------- PatchEmbed
def _patch_embed_cases(rng):
    cases = []
    for batch, chans, height, width, p, dim in ((2, 3, 16, 16, 4, 8), (3, 2, 12, 6, 3, 5), (1, 1, 10, 10, 5, 16)):
        state = random_state(rng, TimmPatchEmbed(img_size=(height, width), patch_size=p, in_chans=chans,
                                                  embed_dim=dim))
        cases.append(Case((normal(rng, batch, chans, height, width),), init=(p, chans, dim), state=state, double=True))
    return cases


def _patch_embed(case):
    p, chans, dim = case.init
    height, width = case.args[0].shape[-2:]
    module = TimmPatchEmbed(img_size=(height, width), patch_size=p, in_chans=chans, embed_dim=dim)
    return [_run(_loaded(module, case.state), case.args[0])]


def _patch_embed_reshaped(case):
    out = _patch_embed(case)[0]                      # (B, N, D): the conv output flattened, reshaped
    b, n, d = out.shape
    return [out.transpose(0, 2, 1).reshape(b, n, d)]


# ----------------------------------------------------------------------- prepend_class_token
def _class_token_cases(rng):
    cases = []
    for batch, n, dim in ((2, 4, 3), (1, 9, 5), (5, 1, 2), (3, 16, 8)):
        cases.append(Case((normal(rng, batch, n, dim), normal(rng, 1, 1, dim), normal(rng, 1, n + 1, dim))))
    return cases


def _class_token(case):
    tokens, cls, pos = (tensor(a) for a in case.args)
    vit = timm_vit.VisionTransformer(img_size=4, patch_size=4, in_chans=1, embed_dim=tokens.shape[-1], depth=1,
                                     num_heads=1, num_classes=0).double()
    with torch.no_grad():
        vit.cls_token.copy_(cls)
        vit.pos_embed = nn.Parameter(pos.clone())
        return [vit._pos_embed(tokens).numpy()]


def _class_token_wrong(case, how):
    tokens, cls, pos = case.args
    cls = np.broadcast_to(cls, (tokens.shape[0], 1, tokens.shape[2]))
    n = tokens.shape[1]
    if how == "pos first":
        return [np.concatenate([cls, tokens + pos[:, 1:]], axis=1)]
    if how == "pos shifted":
        return [np.concatenate([cls, tokens + pos[:, :n]], axis=1)]
    if how == "appended":
        return [np.concatenate([tokens, cls], axis=1) + pos]
    return [np.concatenate([cls, tokens], axis=1)]


# --------------------------------------------------------------------------- Attention, Block
def _attention_cases(rng):
    cases = []
    for batch, n, dim, heads in ((2, 5, 8, 2), (1, 7, 12, 3), (3, 4, 6, 1)):
        state = random_state(rng, timm_vit.Attention(dim, heads, qkv_bias=True))
        cases.append(Case((normal(rng, batch, n, dim),), init=(dim, heads), state=state, double=True))
    return cases


def _attention(case, scale=None):
    dim, heads = case.init
    module = _loaded(timm_vit.Attention(dim, heads, qkv_bias=True), case.state)
    x = tensor(case.args[0])
    b, n, _ = x.shape
    with torch.no_grad():
        q, k, v = module.qkv(x).reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (scale or (dim // heads) ** -0.5), dim=-1)
        out = module.proj((weights @ v).transpose(1, 2).reshape(b, n, dim))
        if scale is None:               # timm's own forward gives the output
            out = module(x)
    return [out.numpy(), weights.numpy()]


def _timm_block(dim, heads, ratio, **kwargs):
    return timm_vit.Block(dim, heads, mlp_ratio=ratio, qkv_bias=True, **kwargs)


def _block_cases(rng):
    cases = []
    for batch, n, dim, heads, ratio in ((2, 5, 8, 2, 4.0), (1, 7, 12, 3, 3.0), (4, 2, 6, 1, 1.0)):
        state = random_state(rng, _timm_block(dim, heads, ratio))
        x = normal(rng, batch, n, dim, scale=0.05)          # small activations make LayerNorm's eps visible
        cases.append(Case((x,), init=(dim, heads, ratio), state=state, double=True))
    return cases


def _block(case, **kwargs):
    return [_run(_loaded(_timm_block(*case.init, **kwargs), case.state), case.args[0])]


def _block_wired(case, post_norm):
    block = _loaded(_timm_block(*case.init), case.state)
    x = tensor(case.args[0])
    with torch.no_grad():
        if post_norm:
            x = block.norm1(x + block.attn(x))
            return [block.norm2(x + block.mlp(x)).numpy()]
        x = block.attn(block.norm1(x))               # the attention branch replaces x
        return [(x + block.mlp(block.norm2(x))).numpy()]


# ------------------------------------------------------------------------------------- ViT
def _timm_vit(img, p, chans, classes, dim, depth, heads, ratio, **kwargs):
    return timm_vit.VisionTransformer(img_size=img, patch_size=p, in_chans=chans, num_classes=classes, embed_dim=dim,
                                      depth=depth, num_heads=heads, mlp_ratio=ratio, qkv_bias=True, **kwargs)


def _vit_cases(rng):
    cases = []
    for config, batch in (((8, 2, 1, 10, 16, 2, 4, 2.0), 3), ((12, 3, 2, 7, 12, 3, 2, 1.5), 4),
                          ((6, 6, 1, 3, 8, 1, 1, 2.0), 1)):
        state = random_state(rng, _timm_vit(*config))
        img, chans = config[0], config[2]
        cases.append(Case((normal(rng, batch, chans, img, img),), init=config, state=state, double=True))
    return cases


def _vit(case, pos_first=False, mean_pool=False, no_norm=False):
    state = dict(case.state)
    kwargs = {}
    if pos_first:          # pos_embed added to the patches, then the class token concatenated
        kwargs["no_embed_class"] = True
        state["pos_embed"] = state["pos_embed"][:, 1:]
    if mean_pool:
        kwargs.update(global_pool="avg", fc_norm=False)
    if no_norm:
        kwargs["final_norm"] = False
        state = {k: v for k, v in state.items() if not k.startswith("norm.")}
    return [_run(_loaded(_timm_vit(*case.init, **kwargs), state), case.args[0])]


ATTENTION = ("scaled_dot_product_attention", "MultiheadAttention")
TIMM_LAYERS = ("TimmAttention", "TimmBlock", "timm_block", "Attention", "Block")

CHECKS = [
    Check("test_patchify", "patchify", _patchify_cases, _patchify, atol=0, rtol=0, forbidden=("unfold", "Unfold"),
          mistakes={"each patch flattened channel-last (p1 p2 c) instead of (c p1 p2)":
                    _rearranged("b (h w) (p1 p2 c)"),
                    "patches taken column by column (w h) instead of row by row (h w)":
                    _rearranged("b (w h) (c p1 p2)"),
                    "a plain reshape without permute: the rows of different patches get mixed": _patchify_reshaped}),
    Check("test_PatchEmbed", "PatchEmbed", _patch_embed_cases, _patch_embed, module=True, atol=1e-10, rtol=1e-9,
          forbidden=("PatchEmbed", "TimmPatchEmbed"),
          mistakes={"flattened to (B, D, N) and reshaped instead of transposed to (B, N, D)":
                    _patch_embed_reshaped}),
    Check("test_prepend_class_token", "prepend_class_token", _class_token_cases, _class_token, atol=1e-12, rtol=0,
          mistakes={"pos_embed added before the class token is concatenated (the class token gets no position "
                    "embedding)": lambda case: _class_token_wrong(case, "pos first"),
                    "pos_embed added before the class token is concatenated (positions shifted by one)":
                    lambda case: _class_token_wrong(case, "pos shifted"),
                    "class token appended at the end instead of prepended":
                    lambda case: _class_token_wrong(case, "appended"),
                    "no position embedding added": lambda case: _class_token_wrong(case, "none")}),
    Check("test_Block", "Attention", _attention_cases, _attention, module=True, attributes=("attn_weights",),
          atol=1e-10, rtol=1e-9, forbidden=TIMM_LAYERS + ATTENTION,
          mistakes={"scores scaled by 1/sqrt(D) instead of 1/sqrt(head_dim)":
                    lambda case: _attention(case, scale=case.init[0] ** -0.5)}),
    Check("test_Block", "Block", _block_cases, _block, module=True, atol=1e-10, rtol=1e-9,
          forbidden=TIMM_LAYERS + ATTENTION,
          mistakes={"LayerNorm eps 1e-5 (PyTorch's default) instead of timm's 1e-6":
                    lambda case: _block(case, norm_layer=partial(nn.LayerNorm, eps=1e-5)),
                    "tanh-approximate GELU instead of the exact GELU":
                    lambda case: _block(case, act_layer=partial(nn.GELU, approximate="tanh")),
                    "post-norm (x = norm(x + f(x))) instead of pre-norm (x = x + f(norm(x)))":
                    lambda case: _block_wired(case, post_norm=True),
                    "the attention branch replaced x instead of being added to it (missing residual)":
                    lambda case: _block_wired(case, post_norm=False)}),
    Check("test_ViT", "ViT", _vit_cases, _vit, module=True, atol=1e-10, rtol=1e-9,
          forbidden=("VisionTransformer", "create_model", "timm_vit", "TimmPatchEmbed") + TIMM_LAYERS + ATTENTION,
          mistakes={"pos_embed added before the class token is concatenated (the class token got no position)":
                    lambda case: _vit(case, pos_first=True),
                    "average of the patch tokens instead of the class token fed to the head":
                    lambda case: _vit(case, mean_pool=True),
                    "missing final LayerNorm `norm` before the head": lambda case: _vit(case, no_norm=True)}),
]
