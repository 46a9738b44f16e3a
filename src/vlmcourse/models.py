"""Small models and weight utilities shared by the vision notebooks.

- :class:`SmallCNN`: a three-stage hierarchical CNN (the ViT's rival in module 05, the teacher in
  module 06).
- :func:`randomise_`: fill a module with random weights, so an oracle comparison never passes by
  accident on zero-initialised parameters.
- :func:`copy_weights`: copy a state dict between a learner's module and a reference module
  (timm), failing with the parameter names that do not match.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SmallCNN", "randomise_", "copy_weights"]


class SmallCNN(nn.Module):
    """Three stages: (c, H, W) -> (2c, H/2, W/2) -> (4c, H/4, W/4), global average pooling, linear head.

    Input ``(B, in_chans, H, W)``, output logits ``(B, num_classes)``. Resolution falls and width grows
    with depth: the hierarchical design of most CNNs.
    """

    def __init__(self, channels: int = 16, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        c = channels

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU())

        self.stages = nn.ModuleList([stage(in_chans, c), nn.Sequential(nn.MaxPool2d(2), stage(c, 2 * c)),
                                     nn.Sequential(nn.MaxPool2d(2), stage(2 * c, 4 * c))])
        self.head = nn.Linear(4 * c, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for stage in self.stages:
            x = stage(x)
        return self.head(x.mean(dim=(2, 3)))  # global average pooling: (B, 4c) -> (B, classes)


def randomise_(module: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Overwrite every parameter with random values (LayerNorm weights near 1), so tests see no zeros."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm_weight = "norm" in name and name.endswith("weight")
            param.copy_(1.0 + 0.2 * noise if is_norm_weight else scale * noise)
    return module


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Load ``source``'s state dict into ``target``; fail with the names that do not match."""
    expected = dict(source.state_dict())
    wrong_shape = [k for k, v in target.state_dict().items() if k in expected and v.shape != expected[k].shape]
    if wrong_shape:
        raise AssertionError(
            f"These parameters have the wrong shape: "
            f"{[(k, tuple(target.state_dict()[k].shape), tuple(expected[k].shape)) for k in wrong_shape]} "
            "(yours, reference).")
    result = target.load_state_dict(expected, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise AssertionError(
            "Your module's parameter names must match timm's so its weights can be copied. "
            f"Missing in yours: {result.missing_keys}; not in timm: {result.unexpected_keys}. "
            f"Compare with: {list(expected)}")
