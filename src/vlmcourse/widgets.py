"""Interactive explorers (ipywidgets) that let learners play with the operators they build.

Each explorer takes the learner's own function, so what moves on screen is their code. The drawing
functions are separate from the widgets so they can be tested and reused without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

# weights = attention_fn(query (1, 2), keys (m, 2), temperature) -> (m,) non-negative, sums to 1
AttentionFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def draw_attention_scene(query: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor,
                         axes: tuple[plt.Axes, plt.Axes]) -> None:
    """Left: keys in the plane, sized and coloured by their weight, and the query. Right: the weights."""
    scene, bars = axes
    k = keys.detach().cpu().numpy()
    w = weights.detach().cpu().reshape(-1).numpy()
    q = query.detach().cpu().reshape(-1).numpy()
    scene.scatter(k[:, 0], k[:, 1], s=40 + 900 * w, c=w, cmap="Reds", vmin=0, vmax=1,
                  edgecolors="black", zorder=2)
    for index, (x, y) in enumerate(k):
        scene.annotate(f"k{index}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    scene.scatter([q[0]], [q[1]], marker="*", s=300, c="tab:blue", zorder=3, label="query")
    scene.set_xlim(-3, 3)
    scene.set_ylim(-3, 3)
    scene.set_aspect("equal")
    scene.grid(alpha=0.3)
    scene.legend(loc="lower right")
    scene.set_title("keys sized by attention weight")
    bars.bar(np.arange(len(w)), w, color="tab:red")
    bars.set_ylim(0, 1)
    bars.set_xticks(np.arange(len(w)), labels=[f"k{i}" for i in range(len(w))])
    bars.set_title(f"weights (sum = {w.sum():.3f})")


def attention_explorer(attention_fn: AttentionFn, keys: torch.Tensor) -> widgets.VBox:
    """Move a 2-D query with sliders and watch ``attention_fn``'s weights over ``keys`` change.

    ``attention_fn(query, keys, temperature)`` receives a query of shape (1, 2), keys of shape
    (m, 2) and a temperature (the scores are divided by it), and returns m weights.
    """
    qx = widgets.FloatSlider(value=0.5, min=-3, max=3, step=0.1, description="query x")
    qy = widgets.FloatSlider(value=0.5, min=-3, max=3, step=0.1, description="query y")
    temperature = widgets.FloatLogSlider(value=1.0, base=10, min=-1.5, max=1.5, step=0.05,
                                         description="temperature")
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        query = torch.tensor([[qx.value, qy.value]], dtype=keys.dtype)
        weights = attention_fn(query, keys, temperature.value)
        with output:
            output.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
            draw_attention_scene(query, keys, weights, (axes[0], axes[1]))
            fig.tight_layout()
            plt.show()

    for slider in (qx, qy, temperature):
        slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([qx, qy, temperature]), output])
    display(box)
    return box


# results = fn(**values) -> {label: number or text}, one row of the table each
CalculatorFn = Callable[..., Mapping[str, object]]


def _format_cell(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    return f"{value:.4g}"


def calculator(fn: CalculatorFn, controls: Mapping[str, widgets.ValueWidget], *,
               fixed: Mapping[str, object] | None = None, columns: int = 3) -> widgets.VBox:
    """Controls for the keyword arguments of ``fn``, and a table of what it returns, kept up to date.

    ``controls`` maps each keyword of ``fn`` to a widget (a slider, a dropdown) whose ``value`` is
    passed; ``fixed`` adds keywords that do not move. ``fn(**values, **fixed)`` returns a dict
    ``{label: value}`` shown as one table row each (numbers with 4 significant digits, anything else
    as text). The table is recomputed whenever a control changes. ``columns`` controls per row.
    """
    fixed = dict(fixed or {})
    table = widgets.HTML()

    def recompute(_change: object = None) -> None:
        values = {name: control.value for name, control in controls.items()}
        rows = "".join(f"<tr><td style='padding-right:1.5em'>{html.escape(str(label))}</td>"
                       f"<td style='text-align:right'><b>{_format_cell(value)}</b></td></tr>"
                       for label, value in fn(**values, **fixed).items())
        table.value = f"<table>{rows}</table>"

    for control in controls.values():
        control.observe(recompute, names="value")
    recompute()
    items = list(controls.values())
    rows = [widgets.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]
    box = widgets.VBox([*rows, table])
    display(box)
    return box
