"""Plots used across the notebooks: attention heatmaps and training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _to_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def show_heatmap(
    matrix: torch.Tensor | np.ndarray,
    *,
    xlabel: str = "keys",
    ylabel: str = "queries",
    title: str | None = None,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    cmap: str = "Reds",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    annotate: bool = False,
) -> plt.Axes:
    """Draw a (queries x keys) matrix such as attention weights; return the axes."""
    data = _to_numpy(matrix)
    if data.ndim != 2:
        raise ValueError(f"show_heatmap expects a 2-D matrix, got shape {data.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(1 + 0.5 * data.shape[1], 8), min(1 + 0.5 * data.shape[0], 6)))
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)), labels=list(xticklabels), rotation=90)
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)), labels=list(yticklabels))
    if annotate:
        for (row, col), value in np.ndenumerate(data):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7)
    return ax


def show_heatmaps(
    matrices: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str],
    *,
    xlabel: str = "keys",
    ylabel: str = "queries",
    cmap: str = "Reds",
) -> plt.Figure:
    """Draw several matrices side by side with a shared colour scale."""
    arrays = [_to_numpy(m) for m in matrices]
    vmax = max(float(a.max()) for a in arrays)
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.2 * len(arrays), 3), squeeze=False)
    for ax, data, title in zip(axes[0], arrays, titles):
        ax.imshow(data, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Plot named curves (e.g. train and validation loss) against their index."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), list(values), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
