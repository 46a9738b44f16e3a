"""The checking helpers decide grades: they must fail wrong answers, pass right ones, and explain."""

import numpy as np
import pytest
import torch

from vlmcourse.checks import assert_close, assert_scalar_close, assert_shape


def test_assert_close_passes_equal_tensors_and_numpy_arrays():
    x = torch.randn(3, 4)
    assert_close(x, x.clone())
    assert_close(x.numpy(), x)


def test_assert_close_reports_shape_difference_and_location():
    with pytest.raises(AssertionError, match=r"shape \(3, 4\), expected \(4, 3\)"):
        assert_close(torch.zeros(3, 4), torch.zeros(4, 3), "y")
    expected = torch.zeros(2, 3)
    got = expected.clone()
    got[1, 2] = 0.5
    with pytest.raises(AssertionError, match=r"index \(1, 2\)"):
        assert_close(got, expected)


def test_assert_close_names_a_known_mistake():
    x = torch.randn(4, 5)
    wrong = torch.softmax(x, dim=0)
    with pytest.raises(AssertionError, match="wrong axis"):
        assert_close(wrong, torch.softmax(x, dim=1), known_mistakes={"wrong axis": wrong})


def test_assert_close_flags_nan_and_non_tensors():
    with pytest.raises(AssertionError, match="NaN"):
        assert_close(torch.tensor([float("nan")]), torch.tensor([1.0]))
    with pytest.raises(AssertionError, match="should be a torch.Tensor"):
        assert_close(None, torch.tensor([1.0]))


def test_checks_resist_monkeypatched_comparisons(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    with pytest.raises(AssertionError):
        assert_close(torch.ones(3), torch.zeros(3))


def test_checks_see_through_tensor_subclasses_that_lie():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    with pytest.raises(AssertionError):
        assert_close(torch.ones(3).as_subclass(Liar), torch.zeros(3))


def test_assert_shape_and_scalar():
    assert_shape(torch.zeros(2, 3), (2, 3))
    with pytest.raises(AssertionError, match="expected"):
        assert_shape(torch.zeros(2, 3), [3, 2], "w")
    assert_scalar_close(768.0, 768)
    with pytest.raises(AssertionError, match="hint text"):
        assert_scalar_close(1.0, 2.0, hint="hint text")
    with pytest.raises(AssertionError, match="should be a number"):
        assert_scalar_close("x", 2.0)
