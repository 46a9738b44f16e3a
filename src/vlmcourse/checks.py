"""Checks with messages that say what is wrong, for graded and self-check tests.

Every check raises ``AssertionError`` with a message meant for the learner: the shapes, the largest
difference and where it is, and, when the answer matches a *known mistake* (an output computed the
wrong way on purpose), the name of that mistake.

The torch functions used here are bound when this module is imported, so a notebook that later
replaces ``torch.allclose`` or ``torch.Tensor.__eq__`` cannot change what these checks decide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vlmcourse.sources import assert_written_by_hand  # noqa: F401  (a check the notebooks import from here)

# Bound at import: later monkeypatching of the public names does not reach these.
_as_tensor = torch.as_tensor
_isfinite = torch.isfinite
_Tensor = torch.Tensor
_tensor_sub = torch.Tensor.sub
_tensor_abs = torch.Tensor.abs
_tensor_max = torch.Tensor.max
_tensor_argmax = torch.Tensor.argmax
_tensor_all = torch.Tensor.all
_tensor_to = torch.Tensor.to
_tensor_detach = torch.Tensor.detach
_tensor_cpu = torch.Tensor.cpu
_tensor_as_subclass = torch.Tensor.as_subclass
_unravel_index = np.unravel_index
_float64 = torch.float64


def _plain_tensor(value: object, name: str) -> torch.Tensor:
    """Return ``value`` as a plain float64 CPU tensor, refusing objects that only look like one."""
    if isinstance(value, _Tensor):
        tensor = _tensor_as_subclass(_tensor_detach(value), _Tensor)
    elif isinstance(value, (np.ndarray, float, int, np.floating, np.integer, list, tuple)):
        tensor = _as_tensor(np.asarray(value, dtype=np.float64))
    else:
        raise AssertionError(
            f"`{name}` should be a torch.Tensor, but it is {type(value).__name__}. "
            "Did you forget a `return`, or return a Python object instead of a tensor?"
        )
    return _tensor_to(_tensor_cpu(tensor), _float64)


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    diff = _tensor_abs(_tensor_sub(a, b))
    if diff.numel() == 0:
        return 0.0, ()
    flat_index = int(_tensor_argmax(diff))
    where = tuple(int(i) for i in _unravel_index(flat_index, tuple(diff.shape))) if diff.dim() else ()
    return float(_tensor_max(diff)), where


def _is_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if tuple(a.shape) != tuple(b.shape):
        return False
    if not bool(_tensor_all(_isfinite(a))):
        return False
    tolerance = atol + rtol * _tensor_abs(b)
    return bool(_tensor_all(_tensor_abs(_tensor_sub(a, b)) <= tolerance))


def assert_shape(value: object, expected: Sequence[int], name: str = "output") -> None:
    """Fail unless ``value`` is a tensor of exactly the shape ``expected``."""
    tensor = _plain_tensor(value, name)
    got, want = tuple(tensor.shape), tuple(int(s) for s in expected)
    if got != want:
        raise AssertionError(f"`{name}` has shape {got}, expected {want}.")


def assert_close(
    actual: object,
    expected: object,
    name: str = "output",
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: str | None = None,
    known_mistakes: Mapping[str, object] | None = None,
) -> None:
    """Fail unless ``actual`` equals ``expected`` within ``atol + rtol*|expected|`` elementwise.

    ``known_mistakes`` maps a description ("softmax over the wrong axis") to the output that
    mistake produces; if ``actual`` matches one of them, the message names it.
    """
    got = _plain_tensor(actual, name)
    want = _plain_tensor(expected, f"reference {name}")
    if tuple(got.shape) != tuple(want.shape):
        message = f"`{name}` has shape {tuple(got.shape)}, expected {tuple(want.shape)}."
        raise AssertionError(_with_hint(message + _name_mistake(got, known_mistakes, atol, rtol), hint))
    if not bool(_tensor_all(_isfinite(got))) and bool(_tensor_all(_isfinite(want))):
        message = f"`{name}` contains NaN or inf where the reference is finite."
        raise AssertionError(_with_hint(message + _name_mistake(got, known_mistakes, atol, rtol), hint))
    if _is_close(got, want, atol, rtol):
        return
    largest, where = _max_abs_diff(got, want)
    message = (
        f"`{name}` differs from the reference: largest |difference| = {largest:.3g} at index {where} "
        f"(got {float(got[where]) if where or got.dim() == 0 else float('nan'):.5g}, "
        f"expected {float(want[where]) if where or want.dim() == 0 else float('nan'):.5g})."
    )
    raise AssertionError(_with_hint(message + _name_mistake(got, known_mistakes, atol, rtol), hint))


def assert_scalar_close(actual: object, expected: float, name: str = "value", *, rel: float = 1e-6,
                        hint: str | None = None) -> None:
    """Fail unless the number ``actual`` is within relative tolerance ``rel`` of ``expected``."""
    try:
        got = float(actual)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AssertionError(f"`{name}` should be a number, but it is {type(actual).__name__}.") from None
    if not math.isfinite(got) or not math.isclose(got, expected, rel_tol=rel, abs_tol=rel):
        raise AssertionError(_with_hint(f"`{name}` is {got:.6g}, expected {expected:.6g}.", hint))


def _name_mistake(got: torch.Tensor, known_mistakes: Mapping[str, object] | None,
                  atol: float, rtol: float) -> str:
    for description, wrong in (known_mistakes or {}).items():
        if _is_close(got, _plain_tensor(wrong, description), atol, rtol):
            return f" Your result matches a known mistake: {description}."
    return ""


def _with_hint(message: str, hint: str | None) -> str:
    return f"{message} Hint: {hint}" if hint else message
