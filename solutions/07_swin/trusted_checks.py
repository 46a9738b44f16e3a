"""The grader's own checks of 07_swin (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel with timm's Swin Transformer (``timm.models.swin_transformer``: its
window functions, relative position index, layers and blocks, loaded with the grader's weights).
Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_shifted_window_attention``: one of its inputs is a window-attention module (``attn``);
  the modules that use it, ``SwinBlock`` and ``SwinStage``, are checked, rolls included;
- what a module registers (``persistent=False`` buffers, ``bias=False``) is read by the kernel's
  test; here a wrong parameter set fails when the grader loads timm's state dict strictly.
"""

from __future__ import annotations

import numpy as np
import torch
from timm.models import swin_transformer as timm_swin

from autograder.trusted import Case, Check, normal, tensor


def _random_state(rng, module: torch.nn.Module) -> dict[str, np.ndarray]:
    """Fresh weights for ``module``'s state dict (norm weights around 1, the rest around 0)."""
    state = {}
    for key, value in module.state_dict().items():
        scale = 0.3 if value.dim() > 1 else 0.5
        state[key] = normal(rng, *value.shape, scale=scale) + (1.0 if "norm" in key and key.endswith("weight") else 0)
    return state


def _loaded(module: torch.nn.Module, state: dict[str, np.ndarray]) -> torch.nn.Module:
    module = module.double().eval()
    module.load_state_dict({k: tensor(v) for k, v in state.items()}, strict=True)
    return module


# --------------------------------------------------------------------------------- merge_2x2
def _merge_cases(rng):
    return [Case((normal(rng, 2, 4, 6, 3),)), Case((normal(rng, 3, 8, 10, 5),))]


def _timm_merge(x: torch.Tensor) -> torch.Tensor:
    """timm's PatchMerging with the LayerNorm and the projection removed: only the concatenation."""
    merger = timm_swin.PatchMerging(dim=x.shape[-1], norm_layer=torch.nn.Identity)
    merger.reduction = torch.nn.Identity()
    return merger(x)


def _merge(case):
    return [_timm_merge(tensor(case.args[0])).numpy()]


def _merge_row_major(case):
    x = case.args[0]
    return [np.concatenate([x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]], -1)]


def _merge_reshape(case):
    B, H, W, C = case.args[0].shape
    return [case.args[0].reshape(B, H // 2, W // 2, 4 * C)]


# ------------------------------------------------------------------------------ PatchMerging
def _patch_merging_cases(rng):
    cases = []
    for dim, shape in ((8, (2, 6, 6)), (12, (1, 10, 4))):
        state = _random_state(rng, timm_swin.PatchMerging(dim=dim))
        cases.append(Case((normal(rng, *shape, dim),), init=(dim,), state=state, double=True))
    return cases


def _patch_merging(case):
    module = _loaded(timm_swin.PatchMerging(dim=case.init[0]), case.state)
    with torch.no_grad():
        return [module(tensor(case.args[0])).numpy()]


# -------------------------------------------------------------------- window_partition/reverse
def _partition_cases(rng):
    return [Case((normal(rng, *shape), M)) for shape, M in (((1, 4, 6, 1), 2), ((2, 12, 8, 3), 4), ((3, 6, 9, 2), 3))]


def _partition(case):
    x, M = case.args
    return [timm_swin.window_partition(tensor(x), (M, M)).numpy()]


def _partition_wrong(case, order):
    x, M = case.args
    B, H, W, C = x.shape
    grid = x.reshape(B, H // M, M, W // M, M, C)
    return [grid.transpose(order).reshape(-1, M, M, C)]


def _reverse_cases(rng):
    cases = []
    for B, H, W, M, C in ((2, 4, 6, 2, 3), (2, 6, 9, 3, 4), (1, 8, 12, 4, 2)):
        cases.append(Case((normal(rng, B * (H // M) * (W // M), M, M, C), M, H, W)))
    return cases


def _reverse(case):
    windows, M, H, W = case.args
    return [timm_swin.window_reverse(tensor(windows), (M, M), H, W).numpy()]


def _reverse_without_permute(case):
    windows, M, H, W = case.args
    return [windows.reshape(-1, H, W, windows.shape[-1])]


# ------------------------------------------------------------------- relative_position_index
def _index_cases(rng):
    return [Case((int(M),)) for M in (2, 3, int(rng.integers(4, 8)))]


def _index(case, swapped=False):
    M = case.args[0]
    index = timm_swin.get_relative_position_index(M, M)
    if swapped:
        index = (index % (2 * M - 1)) * (2 * M - 1) + index // (2 * M - 1)
    return [index.numpy()]


# --------------------------------------------------------------------------- WindowAttention
def _window_attention_cases(rng):
    cases = []
    for dim, heads, M, images, windows in ((8, 2, 3, 2, 4), (12, 3, 4, 3, 2)):
        state = _random_state(rng, timm_swin.WindowAttention(dim, num_heads=heads, window_size=M))
        x = normal(rng, images * windows, M * M, dim)
        mask = np.where(rng.random((windows, M * M, M * M)) < 0.3, -100.0, 0.0)
        mask[:, np.arange(M * M), np.arange(M * M)] = 0.0                # a token always sees itself
        init = (dim, heads, M)
        cases += [Case((x,), init=init, state=state, double=True), Case((x, mask), init=init, state=state, double=True)]
    return cases


def _window_attention(case, without_bias=False):
    dim, heads, M = case.init
    state = dict(case.state)
    if without_bias:
        state["relative_position_bias_table"] = np.zeros_like(state["relative_position_bias_table"])
    module = _loaded(timm_swin.WindowAttention(dim, num_heads=heads, window_size=M), state)
    with torch.no_grad():
        return [module(*(tensor(a) for a in case.args)).numpy()]


# ----------------------------------------------------------------------- shifted_window_mask
def _mask_cases(rng):
    return [Case((H, W, M, s)) for H, W, M, s in ((8, 8, 4, 2), (12, 9, 3, 1), (14, 14, 7, 3))]


def _mask(case):
    H, W, M, s = case.args
    block = timm_swin.SwinTransformerBlock(dim=4, input_resolution=(H, W), num_heads=1, window_size=M, shift_size=s)
    return [block.attn_mask.numpy()]


# -------------------------------------------------------------------------- SwinBlock / Stage
def _timm_block(dim, resolution, heads, M, shift):
    return timm_swin.SwinTransformerBlock(dim=dim, input_resolution=tuple(resolution), num_heads=heads,
                                          window_size=M, shift_size=shift)


def _block_cases(rng):
    cases = []
    for B, H, W, dim, heads, M in ((2, 8, 8, 8, 2, 4), (1, 12, 9, 12, 3, 3)):
        x = normal(rng, B, H, W, dim)
        for shifted in (False, True):
            state = _random_state(rng, _timm_block(dim, (H, W), heads, M, M // 2 if shifted else 0))
            cases.append(Case((x,), init=(dim, [H, W], heads, M, shifted), state=state, double=True))
    return cases


def _block(case, shift_by_window=False):
    dim, resolution, heads, M, shifted = case.init
    shift = (M if shift_by_window else M // 2) if shifted else 0
    block = _loaded(_timm_block(dim, resolution, heads, M, shift % M), case.state)
    with torch.no_grad():
        return [block(tensor(case.args[0])).numpy()]


def _stage_cases(rng):
    cases = []
    for B, H, W, dim, depth, heads, M in ((2, 16, 16, 8, 2, 2, 4), (1, 12, 24, 6, 3, 2, 3)):
        reference = timm_swin.SwinTransformerStage(dim=dim, out_dim=2 * dim, input_resolution=(H, W), depth=depth,
                                                   downsample=True, num_heads=heads, window_size=M)
        cases.append(Case((normal(rng, B, H, W, dim),), init=(dim, [H, W], depth, heads, M),
                          state=_random_state(rng, reference), double=True))
    return cases


def _stage(case, shifted_first=False):
    dim, (H, W), depth, heads, M = case.init
    stage = timm_swin.SwinTransformerStage(dim=dim, out_dim=2 * dim, input_resolution=(H, W), depth=depth,
                                           downsample=True, num_heads=heads, window_size=M)
    if shifted_first:        # the shift alternates the wrong way round: odd blocks regular, even shifted
        for i in range(depth):
            stage.blocks[i] = _timm_block(2 * dim, (H // 2, W // 2), heads, M, M // 2 if i % 2 == 0 else 0)
    stage = _loaded(stage, case.state)
    with torch.no_grad():
        return [stage(tensor(case.args[0])).numpy()]


ATTENTION = ("scaled_dot_product_attention", "MultiheadAttention")

CHECKS = [
    Check("test_merge_2x2", "merge_2x2", _merge_cases, _merge, atol=0, rtol=0, forbidden=("PatchMerging",),
          mistakes={"neighbours concatenated in row-major order (x00, x01, x10, x11); timm's order is "
                    "x00, x10, x01, x11": _merge_row_major,
                    "a plain reshape to (B, H/2, W/2, 4C) mixes tokens of different 2x2 groups": _merge_reshape}),
    Check("test_PatchMerging", "PatchMerging", _patch_merging_cases, _patch_merging, module=True,
          forbidden=("PatchMerging",)),
    Check("test_window_partition", "window_partition", _partition_cases, _partition, atol=0, rtol=0,
          forbidden=("window_partition",),
          mistakes={"window_partition without the permute: a plain reshape puts rows of different windows "
                    "together": lambda case: _partition_wrong(case, (0, 1, 2, 3, 4, 5)),
                    "wrong permute: windows taken column by column (use permute(0, 1, 3, 2, 4, 5))":
                    lambda case: _partition_wrong(case, (0, 3, 1, 2, 4, 5)),
                    "wrong permute: the axes inside a window are transposed":
                    lambda case: _partition_wrong(case, (0, 1, 3, 4, 2, 5))}),
    Check("test_window_reverse", "window_reverse", _reverse_cases, _reverse, atol=0, rtol=0,
          forbidden=("window_reverse",),
          mistakes={"window_reverse does not undo the permute of window_partition": _reverse_without_permute}),
    Check("test_relative_position_index", "relative_position_index", _index_cases, _index, atol=0, rtol=0,
          forbidden=("get_relative_position_index",),
          mistakes={"indexing='xy' in torch.meshgrid (rows and columns swapped); use indexing='ij'":
                    lambda case: _index(case, swapped=True)}),
    Check("test_WindowAttention", "WindowAttention", _window_attention_cases, _window_attention, module=True,
          forbidden=("WindowAttention",) + ATTENTION,
          mistakes={"the relative position bias is not added": lambda case: _window_attention(case, True)}),
    Check("test_shifted_window_mask", "shifted_window_mask", _mask_cases, _mask, atol=0, rtol=0,
          forbidden=("SwinTransformerBlock",),
          mistakes={"masked entries filled with -inf instead of -100":
                    lambda case: [np.where(_mask(case)[0] != 0, -np.inf, 0.0)],
                    "mask of opposite polarity (-100 where tokens share a region)":
                    lambda case: [np.where(_mask(case)[0] == 0, -100.0, 0.0)]}),
    Check("test_SwinBlock", "SwinBlock", _block_cases, _block, module=True,
          forbidden=("SwinTransformerBlock", "window_partition", "window_reverse") + ATTENTION,
          mistakes={"shifted by M instead of M // 2 (a shift of a whole window changes nothing)":
                    lambda case: _block(case, shift_by_window=True)}),
    Check("test_SwinStage", "SwinStage", _stage_cases, _stage, module=True,
          forbidden=("SwinTransformerStage", "SwinTransformerBlock"),
          mistakes={"blocks alternate the shift the wrong way round (use shifted = i % 2 == 1)":
                    lambda case: _stage(case, shifted_first=True)}),
]
