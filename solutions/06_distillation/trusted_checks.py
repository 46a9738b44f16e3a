"""The grader's own checks of 06_distillation (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel in float64 with scipy (``scipy.special.log_softmax``,
``rel_entr``) and with timm's ``VisionTransformerDistilled`` loaded with the grader's weights
strictly. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- the training-mode output of ``DistilledViT`` (the tuple of the two heads): the grader runs modules
  in eval mode, where the output is the mean of the two heads, so both heads, the token order, the
  position embedding and the final norm are all judged there;
- ``test_distillation_helps``: the result of training (students with and without the teacher).
"""

from __future__ import annotations

import numpy as np
import scipy.special
import torch
from timm.models.deit import VisionTransformerDistilled

from autograder.trusted import Case, Check, normal, random_state, tensor


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return scipy.special.log_softmax(logits, axis=-1)


def _hard(student: np.ndarray, teacher: np.ndarray, axis: int = -1, reduce=np.mean) -> np.ndarray:
    labels = teacher.argmax(axis=axis)
    return np.array(reduce(-_log_softmax(student)[np.arange(student.shape[0]), labels]))


def _soft(student: np.ndarray, teacher: np.ndarray, t: float) -> np.ndarray:
    p = scipy.special.softmax(student / t, axis=-1)
    q = scipy.special.softmax(teacher / t, axis=-1)
    return np.array(scipy.special.rel_entr(q, p).sum() / student.shape[0] * t**2)


# -------------------------------------------------------------------- soft_distillation_loss
def _soft_cases(rng):
    return [Case((normal(rng, b, k, scale=2.0), normal(rng, b, k, scale=2.0), t), grad=(0,))
            for b, k, t in ((4, 6, 1.0), (3, 5, 2.5), (5, 10, float(rng.uniform(1.5, 6.0))))]


def _soft_reference(case):
    """The loss and its gradient with respect to the student's logits, T (p - q) / B, in closed form."""
    student, teacher, t = case.args
    p = scipy.special.softmax(student / t, axis=-1)
    q = scipy.special.softmax(teacher / t, axis=-1)
    return [_soft(student, teacher, t), t * (p - q) / student.shape[0]]


def _soft_wrong(loss):
    """A wrong loss(student, teacher, t) on float64 tensors, with its gradient by autograd."""
    def outputs(case):
        student = tensor(case.args[0]).clone().requires_grad_(True)
        value = loss(student, tensor(case.args[1]), case.args[2])
        return [value.detach().numpy(), torch.autograd.grad(value, student)[0].numpy()]
    return outputs


def _kl(log_p, log_q):
    """KL(p || q) summed over classes, averaged over the batch."""
    return (log_p.exp() * (log_p - log_q)).sum() / log_p.shape[0]


def _log_soft(x, t):
    return torch.log_softmax(x / t, dim=-1)


_SOFT_MISTAKES = {
    "the T^2 factor is missing": _soft_wrong(lambda s, te, t: _kl(_log_soft(te, t), _log_soft(s, t))),
    "KL in the wrong direction (from the student to the teacher)":
        _soft_wrong(lambda s, te, t: _kl(_log_soft(s, t), _log_soft(te, t)) * t**2),
    "reduction mean (over B x K) instead of batchmean (over B)":
        _soft_wrong(lambda s, te, t: _kl(_log_soft(te, t), _log_soft(s, t)) * t**2 / s.shape[1]),
    "temperature applied to the student only":
        _soft_wrong(lambda s, te, t: _kl(_log_soft(te, 1.0), _log_soft(s, t)) * t**2),
    "the student's logits detached: the loss has no gradient":
        lambda case: [_soft_reference(case)[0], np.zeros_like(case.args[0])],
}


# -------------------------------------------------------------------- hard_distillation_loss
def _hard_cases(rng):
    return [Case((normal(rng, b, k), normal(rng, b, k, scale=2.0))) for b, k in ((5, 5), (8, 3), (6, 6), (2, 9))]


def _soft_targets(case):
    student, teacher = case.args
    q = scipy.special.softmax(teacher, axis=-1)
    return [np.array(-(q * _log_softmax(student)).sum(axis=-1).mean())]


def _over_batch(case):
    student, teacher = case.args
    if student.shape[0] != student.shape[1]:
        return [np.full(1, np.nan)]          # the wrong argmax has the wrong length: it raises instead
    return [_hard(student, teacher, axis=0)]


# ----------------------------------------------------------------------------- DistilledViT
def _timm_deit(img, p, chans, classes, dim, depth, heads, ratio):
    return VisionTransformerDistilled(img_size=img, patch_size=p, in_chans=chans, num_classes=classes, embed_dim=dim,
                                      depth=depth, num_heads=heads, mlp_ratio=ratio)


def _deit_cases(rng):
    cases = []
    for config, batch in (((8, 4, 1, 5, 12, 2, 3, 2.0), 3), ((12, 3, 2, 7, 24, 3, 4, 1.5), 4),
                          ((6, 2, 1, 3, 6, 2, 1, 2.0), 1)):
        img, chans = config[0], config[2]
        cases.append(Case((normal(rng, batch, chans, img, img),), init=config,
                          state=random_state(rng, _timm_deit(*config)), double=True))
    return cases


def _deit_model(case) -> VisionTransformerDistilled:
    model = _timm_deit(*case.init).double().eval()
    model.load_state_dict({k: tensor(v) for k, v in case.state.items()}, strict=True)
    return model


def _deit(case):
    model = _deit_model(case)
    with torch.no_grad():
        return [model(tensor(case.args[0])).numpy()]


def _deit_wrong(case, order="cls dist patches", pos_first=False, final_norm=True, heads="mean"):
    """The eval-mode logits with one thing done the wrong way (the grader's weights)."""
    model = _deit_model(case)
    with torch.no_grad():
        patches = model.patch_embed(tensor(case.args[0]))
        b = patches.shape[0]
        parts = {"cls": model.cls_token.expand(b, -1, -1), "dist": model.dist_token.expand(b, -1, -1),
                 "patches": patches + (model.pos_embed[:, 2:] if pos_first else 0)}
        tokens = torch.cat([parts[name] for name in order.split()], dim=1)
        features = model.blocks(tokens if pos_first else tokens + model.pos_embed)
        if final_norm:
            features = model.norm(features)
        cls_logits, dist_logits = model.head(features[:, 0]), model.head_dist(features[:, 1])
        out = {"mean": (cls_logits + dist_logits) / 2, "cls": cls_logits, "dist": dist_logits,
               "sum": cls_logits + dist_logits,
               "swapped": (model.head(features[:, 1]) + model.head_dist(features[:, 0])) / 2,
               "probabilities": (cls_logits.softmax(-1) + dist_logits.softmax(-1)) / 2}[heads]
        return [out.numpy()]


# --------------------------------------------------------------------------------- deit_loss
def _deit_loss_cases(rng):
    cases = []
    for b, k, alpha, temperature in ((6, 5, 0.3, None), (4, 10, 0.7, 3.0), (9, 4, 0.25, 2.0), (3, 6, 0.8, None),
                                     (5, 3, 0.0, 5.0), (7, 7, 1.0, 0.5)):
        c, d, t = (normal(rng, b, k, scale=2.0) for _ in range(3))
        y = rng.integers(0, k, size=b).astype(np.int64)
        cases.append(Case((c, d, y, t), {"alpha": alpha, "temperature": temperature}))
    return cases


def _deit_loss(case, swap=False, alpha=None, weighted=True, temperature="given"):
    c, d, y, t = case.args
    if swap:
        c, d = d, c
    alpha = case.kwargs["alpha"] if alpha is None else alpha
    temperature = case.kwargs["temperature"] if temperature == "given" else temperature
    label_term = -_log_softmax(c)[np.arange(c.shape[0]), y].mean()
    teacher_term = _hard(d, t) if temperature is None else _soft(d, t, temperature)
    if not weighted:
        return [np.array(label_term + teacher_term)]
    return [np.array((1 - alpha) * label_term + alpha * teacher_term)]


CHECKS = [
    Check("test_soft_distillation_loss", "soft_distillation_loss", _soft_cases, _soft_reference,
          atol=1e-10, rtol=1e-9, mistakes=_SOFT_MISTAKES),
    Check("test_hard_distillation_loss", "hard_distillation_loss", _hard_cases,
          lambda case: [_hard(*case.args)], atol=1e-10, rtol=1e-9,
          mistakes={"cross-entropy against the teacher's probabilities (soft targets) instead of its argmax":
                    _soft_targets,
                    "student and teacher swapped: the student's argmax was used as the label":
                    lambda case: [_hard(case.args[1], case.args[0])],
                    "the loss is summed over the batch instead of averaged":
                    lambda case: [_hard(*case.args, reduce=np.sum)],
                    "argmax taken over the batch (dim=0) instead of the classes (dim=-1)": _over_batch}),
    Check("test_DistilledViT", "DistilledViT", _deit_cases, _deit, module=True, atol=1e-10, rtol=1e-9,
          forbidden=("VisionTransformerDistilled", "timm_deit"),
          mistakes={"the distillation token is appended after the patches (DeiT puts it at position 1, right after "
                    "the class token)": lambda case: _deit_wrong(case, order="cls patches dist"),
                    "tokens in the order [distillation, class, patches]: the class token goes first":
                    lambda case: _deit_wrong(case, order="dist cls patches"),
                    "pos_embed added to the patches before the class and distillation tokens are concatenated":
                    lambda case: _deit_wrong(case, pos_first=True),
                    "the final LayerNorm (self.norm) is missing": lambda case: _deit_wrong(case, final_norm=False),
                    "only the class head is used at inference: average it with the distillation head":
                    lambda case: _deit_wrong(case, heads="cls"),
                    "only the distillation head is used at inference": lambda case: _deit_wrong(case, heads="dist"),
                    "heads swapped: `head` must read the class token (index 0), `head_dist` the distillation "
                    "token (1)": lambda case: _deit_wrong(case, heads="swapped"),
                    "the heads are summed instead of averaged": lambda case: _deit_wrong(case, heads="sum"),
                    "the heads' probabilities are averaged instead of their logits":
                    lambda case: _deit_wrong(case, heads="probabilities")}),
    Check("test_deit_loss", "deit_loss", _deit_loss_cases, _deit_loss, atol=1e-10, rtol=1e-9,
          mistakes={"the heads are swapped: the class head learns the labels, the distillation head the teacher":
                    lambda case: _deit_loss(case, swap=True),
                    "alpha weights the label term instead of the teacher term":
                    lambda case: _deit_loss(case, alpha=1 - case.kwargs["alpha"]),
                    "the two terms are added without the weights (1 - alpha) and alpha":
                    lambda case: _deit_loss(case, weighted=False),
                    "the temperature is ignored (hard distillation used although a temperature was given)":
                    lambda case: _deit_loss(case, temperature=None),
                    "soft distillation used although temperature is None (hard distillation expected)":
                    lambda case: _deit_loss(case, temperature=1.0 if case.kwargs["temperature"] is None else None)}),
]
