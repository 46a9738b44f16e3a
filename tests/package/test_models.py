"""The shared small models and weight utilities (vlmcourse.models)."""

import pytest
import torch
import torch.nn as nn

from vlmcourse.models import SmallCNN, copy_weights, randomise_


def test_small_cnn_is_hierarchical_and_classifies():
    model = SmallCNN(channels=4, num_classes=7, in_chans=3).eval()
    images = torch.randn(2, 3, 16, 16)
    assert model(images).shape == (2, 7)
    x, shapes = images, []
    for stage in model.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]


def test_randomise_is_deterministic_and_leaves_norm_weights_near_one():
    a = randomise_(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), seed=5)
    b = randomise_(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), seed=5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    norm = nn.Module()
    norm.norm = nn.LayerNorm(64)
    randomise_(norm, seed=1)
    assert (norm.norm.weight - 1).abs().max() < 1.5 and norm.norm.weight.mean() > 0.8
    assert norm.norm.bias.abs().max() > 0


def test_copy_weights_copies_and_names_what_does_not_match():
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    copy_weights(source, target)
    assert torch.equal(source.weight, target.weight)
    with pytest.raises(AssertionError, match="wrong shape"):
        copy_weights(nn.Linear(3, 2), nn.Linear(3, 4))
    renamed = nn.Module()
    renamed.proj = nn.Linear(3, 2)
    with pytest.raises(AssertionError, match=r"Missing in yours: \['proj.weight', 'proj.bias'\]"):
        copy_weights(nn.Sequential(nn.Linear(3, 2)), renamed)
