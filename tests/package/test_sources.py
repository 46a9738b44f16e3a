"""vlmcourse.sources: which references an exercise's code reaches, read from its source."""

from __future__ import annotations

import pytest
from harness import compile_cell

from vlmcourse.sources import assert_written_by_hand, dynamic_access, forbidden_calls


def test_forbidden_calls_follow_the_learners_code_and_its_imports() -> None:
    forbidden = ("softmax", "Softmax")
    assert forbidden_calls(["def softmax(x):\n    e = x.exp()\n    return e / e.sum()"], "softmax", forbidden) == []
    assert forbidden_calls(["def softmax(x, dim):\n    return torch.softmax(x, dim)"], "softmax", forbidden) == \
        ["torch.softmax"]
    assert forbidden_calls(["def softmax(x):\n    return x.softmax(-1)"], "softmax", forbidden) == ["x.softmax"]
    assert forbidden_calls(["softmax = torch.nn.functional.softmax"], "softmax", forbidden) == \
        ["torch.nn.functional.softmax"]
    helper = ["from torch.nn.functional import softmax as sm\ndef _norm(x):\n    return sm(x, -1)",
              "class Layer(nn.Module):\n    def forward(self, x):\n        return _norm(x)"]
    assert forbidden_calls(helper, "Layer", forbidden) == ["torch.nn.functional.softmax"]
    own = ["def softmax(x):\n    e = x.exp()\n    return e / e.sum()", "def attend(s):\n    return softmax(s)"]
    assert forbidden_calls(own, "attend", forbidden) == [], "the learner's own softmax is allowed"
    unrelated = ["def other(x):\n    return torch.softmax(x, -1)", "def mine(x):\n    return x + 1"]
    assert forbidden_calls(unrelated, "mine", forbidden) == [], "only code the exercise reaches counts"
    assert forbidden_calls(["def broken(:"], "broken", forbidden) == []
    setup_import = ["def loss(a, b, s):\n    return ClipLoss()(a, b, s)"]     # imported by a setup cell, not here
    assert forbidden_calls(setup_import, "loss", ("ClipLoss",)) == ["ClipLoss"]
    assert dynamic_access(["def f(x):\n    return getattr(torch, 'soft' + 'max')(x)"], "f") == ["getattr"]


def test_locals_are_not_globals_and_methods_are_not_builtins() -> None:
    """A parameter that shares a notebook global's name is not that global; ``layer.eval()`` and
    ``torch.compile(f)`` are not ``eval`` and ``compile``; real dynamic access still counts."""
    demo = ["layer = MultiHeadAttention(16, 4).eval()",
            "def attend_heads(layer, x):\n    return layer(x)",
            "def mine(x):\n    log_softmax = x - 1\n    return log_softmax"]
    assert dynamic_access(demo, "attend_heads") == [], "the parameter `layer` is not the demo cell's `layer`"
    assert forbidden_calls(demo, "mine", ("log_softmax",)) == [], "a local variable named like the reference"
    assert dynamic_access(["def f(m, g):\n    m.eval()\n    return torch.compile(g)"], "f") == []
    assert dynamic_access(["def f(x):\n    return importlib.import_module('torch').softmax(x)"], "f") == \
        ["import_module"]
    assert dynamic_access(["def f(x):\n    return builtins.eval('x')"], "f") == ["eval"]
    assert dynamic_access(["def f(x):\n    return eval('x')"], "f") == ["eval"]
    helper = ["def _h(x):\n    return torch.softmax(x, -1)", "def f(x):\n    g = lambda y: _h(y)\n    return g(x)"]
    assert forbidden_calls(helper, "f", ("softmax",)) == ["torch.softmax"], "a global reached from a lambda"
    shadowed = ["def _h(x):\n    return torch.softmax(x, -1)", "def f(x, _h=None):\n    return x + 1"]
    assert forbidden_calls(shadowed, "f", ("softmax",)) == []
    declared = ["def _h(x):\n    return torch.softmax(x, -1)", "def f(x):\n    global _h\n    return _h(x)"]
    assert forbidden_calls(declared, "f", ("softmax",)) == ["torch.softmax"]


def test_the_visible_check_reads_the_kernels_functions() -> None:
    namespace: dict = {"__name__": "__main__"}
    cells = ["import torch", "def softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n",
             "def attend(s):\n    return softmax(s)\n"]
    for index, source in enumerate(cells):
        exec(compile_cell(source, f"<cell {index}>"), namespace)
    with pytest.raises(AssertionError, match="you called the reference it is compared with"):
        assert_written_by_hand(namespace["attend"], "softmax")
    cell = "def softmax(x, dim=-1):\n    e = x.exp()\n    return e / e.sum(dim, keepdim=True)\n"
    exec(compile_cell(cell, "<cell 3>"), namespace)
    assert_written_by_hand(namespace["attend"], "softmax")


def test_the_visible_check_sees_names_a_setup_cell_imported() -> None:
    namespace: dict = {"__name__": "__main__"}
    cells = ["from torch.nn import CrossEntropyLoss", "def loss(a, b):\n    return CrossEntropyLoss()(a, b)\n"]
    for index, source in enumerate(cells):
        exec(compile_cell(source, f"<setup cell {index}>"), namespace)
    with pytest.raises(AssertionError, match="`CrossEntropyLoss`: you called the reference"):
        assert_written_by_hand(namespace["loss"], "CrossEntropyLoss")
