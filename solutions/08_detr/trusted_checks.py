"""The grader's own checks of 08_detr (autograder/trusted.py): fresh inputs, references computed
outside the learner's kernel with ``torchvision.ops`` (box conversion, area, IoU, generalised IoU) and
``scipy.optimize.linear_sum_assignment``. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_set_loss``: its inputs are a list of dicts of tensors (the targets) and a list of pairs of
  tensors (the matching); a case's arguments can only be arrays or plain JSON values today;
- ``test_trained_detector``: the result of training (mAP@0.5 of the trained TinyDETR).

``hungarian_match`` is compared index by index with scipy's assignment on random continuous costs,
where the optimum is unique (a tie has probability zero), so this is the same as comparing the total
matched cost. The exercise asks for ``linear_sum_assignment``: it is not forbidden.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision import ops

from autograder.trusted import Case, Check, normal, tensor


def _cxcywh(rng, *shape: int) -> np.ndarray:
    """Random valid (cx, cy, w, h) boxes inside the unit square, of shape (*shape, 4)."""
    wh = 0.05 + 0.45 * rng.random((*shape, 2))
    centre = wh / 2 + (1 - wh) * rng.random((*shape, 2))
    return np.concatenate([centre, wh], axis=-1)


def _xyxy(rng, n: int) -> np.ndarray:
    return ops.box_convert(tensor(_cxcywh(rng, n)), "cxcywh", "xyxy").numpy()


# ------------------------------------------------------------------------------- box formats
def _format_cases(rng):
    return [Case((_cxcywh(rng, int(rng.integers(2, 9))),)), Case((_cxcywh(rng, 3, 4),)), Case((_cxcywh(rng),))]


def _to_xyxy(case):
    boxes = tensor(case.args[0])
    return [ops.box_convert(boxes.reshape(-1, 4), "cxcywh", "xyxy").reshape(boxes.shape).numpy()]


def _to_xyxy_full_size(case):
    cx, cy, w, h = np.moveaxis(case.args[0], -1, 0)
    return [np.stack([cx - w, cy - h, cx + w, cy + h], -1)]


def _to_xyxy_wrong_order(case):
    cx, cy, w, h = np.moveaxis(case.args[0], -1, 0)
    return [np.stack([cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2], -1)]


def _xyxy_cases(rng):
    return [Case((_to_xyxy(c)[0],)) for c in _format_cases(rng)]


def _to_cxcywh(case):
    boxes = tensor(case.args[0])
    return [ops.box_convert(boxes.reshape(-1, 4), "xyxy", "cxcywh").reshape(boxes.shape).numpy()]


def _to_cxcywh_half_difference(case):
    x0, y0, x1, y1 = np.moveaxis(case.args[0], -1, 0)
    return [np.stack([(x1 - x0) / 2, (y1 - y0) / 2, x1 - x0, y1 - y0], -1)]


CONVERT = ("box_convert", "_box_cxcywh_to_xyxy", "_box_xyxy_to_cxcywh")


# ----------------------------------------------------------------------------- area, IoU, GIoU
def _pair_cases(rng):
    """Random boxes (many pairs disjoint), and pairs disjoint along one axis, along both, nested, equal."""
    fixed_a = np.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.9]])
    fixed_b = np.array([[1.0, 1.0, 3.0, 3.0], [3.0, 3.0, 4.0, 5.0], [0.0, 0.0, 2.0, 2.0], [3.0, 0.5, 4.0, 1.5],
                        [0.5, 3.0, 1.5, 4.0]])
    return [Case((_xyxy(rng, int(rng.integers(4, 9))), _xyxy(rng, int(rng.integers(3, 7))))),
            Case((_xyxy(rng, 6), _xyxy(rng, 1))), Case((fixed_a, fixed_b))]


def _area_cases(rng):
    return [Case((_xyxy(rng, int(rng.integers(2, 9))),)), Case((_xyxy(rng, 1),))]


def _inter_union(a: np.ndarray, b: np.ndarray, clamp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and union of every pair, in float64 numpy (written here, not torchvision's)."""
    wh = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])
    inter = (np.clip(wh, 0, None) if clamp else wh).prod(-1)
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area[0][:, None] + area[1][None, :] - inter


def _iou(case):
    a, b = case.args
    return [ops.box_iou(tensor(a), tensor(b)).numpy(), _inter_union(a, b)[1]]


def _iou_not_clamped(case):
    inter, union = _inter_union(*case.args, clamp=False)
    return [inter / union, union]


def _iou_union_without_inter(case):
    inter, union = _inter_union(*case.args)
    return [inter / (union + inter), union + inter]


def _giou(case):
    return [ops.generalized_box_iou(*(tensor(a) for a in case.args)).numpy()]


def _enclosing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.maximum(a[:, None, 2:], b[None, :, 2:]) - np.minimum(a[:, None, :2], b[None, :, :2])).prod(-1)


def _giou_over_union(case):
    inter, union = _inter_union(*case.args)
    enclosing = _enclosing(*case.args)
    return [inter / union - (enclosing - union) / union]


def _giou_plus(case):
    inter, union = _inter_union(*case.args)
    enclosing = _enclosing(*case.args)
    return [inter / union + (enclosing - union) / enclosing]


IOU = ("box_iou", "_box_inter_union", "generalized_box_iou", "_box_diou_iou", "complete_box_iou",
       "distance_box_iou")


# ---------------------------------------------------------------------------- matching cost
def _cost_cases(rng):
    cases = []
    for Q, T, K in ((5, 3, 4), (9, 1, 2), (7, 7, 6)):
        cases.append(Case((normal(rng, Q, K + 1, scale=2.0), _cxcywh(rng, Q), rng.integers(0, K, size=T),
                           _cxcywh(rng, T))))
    return cases


def _cost(case, l1_on_xyxy=False, class_cost=None, giou_sign=-1.0):
    logits, boxes, labels, tgt_boxes = (tensor(a) for a in case.args)
    xyxy_p, xyxy_t = ops.box_convert(boxes, "cxcywh", "xyxy"), ops.box_convert(tgt_boxes, "cxcywh", "xyxy")
    prob = torch.softmax(logits, -1)[:, labels]
    cls = -prob if class_cost is None else class_cost(logits[:, labels], prob)
    l1 = torch.cdist(xyxy_p, xyxy_t, p=1) if l1_on_xyxy else torch.cdist(boxes, tgt_boxes, p=1)
    return [(cls + 5 * l1 + giou_sign * 2 * ops.generalized_box_iou(xyxy_p, xyxy_t)).numpy()]


# --------------------------------------------------------------------------- hungarian match
def _match_cases(rng):
    cases = [Case((rng.random((Q, T)),)) for Q, T in ((6, 3), (5, 5), (7, 1))]
    return cases + [Case((normal(rng, 8, 4, scale=3.0),)), Case((np.array([[1.0, 2.0], [0.5, 9.0], [3.0, 3.0]]),))]


def _match(case, maximize=False):
    rows, cols = linear_sum_assignment(case.args[0], maximize=maximize)
    return [rows.astype(np.int64), cols.astype(np.int64)]


CHECKS = [
    Check("test_box_formats", "box_cxcywh_to_xyxy", _format_cases, _to_xyxy, atol=1e-12, rtol=1e-12,
          forbidden=CONVERT,
          mistakes={"the corners are at cx ± w (use half the width and height)": _to_xyxy_full_size,
                    "(x0, x1, y0, y1) order instead of (x0, y0, x1, y1)": _to_xyxy_wrong_order}),
    Check("test_box_formats", "box_xyxy_to_cxcywh", _xyxy_cases, _to_cxcywh, atol=1e-12, rtol=1e-12,
          forbidden=CONVERT,
          mistakes={"the centre as (x1 - x0) / 2 instead of the mean of the corners": _to_cxcywh_half_difference}),
    Check("test_box_iou", "box_area", _area_cases, lambda case: [ops.box_area(tensor(case.args[0])).numpy()],
          atol=1e-12, rtol=1e-12),
    Check("test_box_iou", "box_iou", _pair_cases, _iou, atol=1e-12, rtol=1e-10, forbidden=IOU,
          mistakes={"intersection not clamped at 0 for boxes that do not overlap": _iou_not_clamped,
                    "union = area1 + area2 (the intersection is counted twice)": _iou_union_without_inter}),
    Check("test_generalized_box_iou", "generalized_box_iou", _pair_cases, _giou, atol=1e-12, rtol=1e-10,
          forbidden=IOU,
          mistakes={"divided by the union instead of the enclosing area": _giou_over_union,
                    "plain IoU (the enclosing-box penalty is missing)": lambda case: [_iou(case)[0]],
                    "IoU + penalty instead of IoU - penalty": _giou_plus}),
    Check("test_matching_cost", "matching_cost", _cost_cases, _cost, atol=1e-10, rtol=1e-10,
          mistakes={"L1 distance on xyxy boxes: DETR's L1 cost uses (cx, cy, w, h)":
                    lambda case: _cost(case, l1_on_xyxy=True),
                    "class cost from the logits instead of the softmax probabilities":
                    lambda case: _cost(case, class_cost=lambda logits, prob: -logits),
                    "class cost -log p instead of -p":
                    lambda case: _cost(case, class_cost=lambda logits, prob: -prob.log()),
                    "GIoU added instead of subtracted": lambda case: _cost(case, giou_sign=1.0)}),
    Check("test_hungarian_match", "hungarian_match", _match_cases, _match, atol=0, rtol=0,
          mistakes={"the maximum total cost (maximize=True), not the minimum":
                    lambda case: _match(case, maximize=True)}),
]
