"""Plotting, widgets, training and device helpers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vlmcourse import get_device, seed_everything, setup_notebook  # noqa: E402
from vlmcourse.plotting import plot_curves, show_heatmap, show_heatmaps  # noqa: E402
from vlmcourse.training import accuracy, minibatches, run_steps, train_classifier  # noqa: E402
from vlmcourse.widgets import attention_explorer, draw_attention_scene  # noqa: E402


def test_device_defaults_to_cpu_without_gpu(monkeypatch):
    monkeypatch.delenv("VLM_COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected
    monkeypatch.setenv("VLM_COURSE_DEVICE", "cpu")
    assert get_device().type == "cpu"


def test_seed_everything_is_reproducible():
    seed_everything(3)
    a = torch.randn(4)
    generator = seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    assert torch.equal(torch.randn(2, generator=generator), torch.randn(2, generator=seed_everything(3)))


def test_setup_notebook_seeds_sets_threads_and_reports_time(capsys):
    threads = torch.get_num_threads()
    try:
        clock = setup_notebook(seed=3)
        assert torch.get_num_threads() == 1
        assert "e-" not in str(torch.tensor([1e-6]))  # no scientific notation
        first = torch.randn(4)
        setup_notebook(seed=3, threads=None)
        assert torch.get_num_threads() == 1
        assert torch.equal(first, torch.randn(4))
        line = clock.report()
    finally:
        torch.set_num_threads(threads)
        torch.set_printoptions(profile="default")
    assert line.startswith("This notebook ran in ") and "s of CPU time" in line
    assert capsys.readouterr().out == line + "\n"


def test_heatmaps_and_curves_draw():
    ax = show_heatmap(torch.rand(3, 4), title="t", xticklabels=list("abcd"), annotate=True)
    assert ax.get_title() == "t" and len(ax.texts) == 12
    fig = show_heatmaps([torch.rand(2, 2), torch.rand(2, 2)], ["a", "b"])
    assert len(fig.axes) == 2
    ax = plot_curves({"train": [3, 2, 1], "val": [3, 2.5, 2]}, logy=True)
    assert len(ax.lines) == 2
    with pytest.raises(ValueError):
        show_heatmap(torch.rand(2, 2, 2))
    plt.close("all")


def test_attention_explorer_uses_the_given_function_and_redraws():
    calls = []

    def fn(query, keys, temperature):
        calls.append((tuple(query.shape), temperature))
        return torch.softmax(keys @ query[0] / temperature, dim=0)

    keys = torch.randn(5, 2)
    box = attention_explorer(fn, keys)
    assert calls == [((1, 2), 1.0)]
    box.children[0].children[2].value = 2.0     # temperature slider
    assert calls[-1] == ((1, 2), 2.0)
    fig, axes = plt.subplots(1, 2)
    draw_attention_scene(torch.zeros(1, 2), keys, torch.full((5,), 0.2), (axes[0], axes[1]))
    assert len(axes[1].patches) == 5
    plt.close("all")


def test_run_steps_records_history_and_evaluations():
    history = run_steps(lambda step: 10.0 - step, 5, eval_fn=lambda: 0.5, eval_every=2, progress=False)
    assert history["loss"] == [10.0, 9.0, 8.0, 7.0, 6.0]
    assert history["eval"] == [0.5, 0.5, 0.5]      # after steps 2, 4 and the last one


def test_minibatches_cover_the_data_and_align():
    x, y = torch.arange(10.0), torch.arange(10)
    batches = minibatches(x, y, batch_size=5, generator=torch.Generator().manual_seed(0))
    first, second = next(batches), next(batches)
    assert torch.equal(first[0].long(), first[1])
    assert sorted(torch.cat([first[1], second[1]]).tolist()) == list(range(10))
    with pytest.raises(ValueError):
        next(minibatches(x, torch.arange(3), batch_size=2))


def test_accuracy_counts_argmax_matches():
    inputs = torch.eye(4)
    labels = torch.tensor([0, 1, 2, 0])
    assert accuracy(lambda batch: batch, inputs, labels, batch_size=3) == 0.75


def _tiny_classifier(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


def test_train_classifier_is_reproducible_and_takes_a_custom_loss():
    labels = torch.arange(60) % 3
    images = labels[:, None, None, None] + 0.3 * torch.randn(60, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(2):
        model = _tiny_classifier(0)
        history = train_classifier(model, images, labels, images, labels, steps=30, batch_size=16,
                                   lr=0.05, eval_every=10, seed=4, progress=False)
        runs.append((history, model))
    (first, model), (second, _) = runs
    assert len(first["loss"]) == 30 and len(first["eval"]) == 3
    assert first == second and not model.training
    assert sum(first["loss"][-10:]) / 10 < 0.75 * first["loss"][0]  # it learns
    calls = []

    def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return torch.nn.functional.cross_entropy(model(x), y)

    custom = train_classifier(_tiny_classifier(0), images, labels, images, labels, steps=30, batch_size=16,
                              lr=0.05, eval_every=10, seed=4, loss_fn=loss_fn, progress=False)
    assert custom == first and calls == [(16, 1, 4, 4)] * 30


def test_calculator_passes_the_controls_and_fixed_values_and_recomputes():
    import ipywidgets

    from vlmcourse.widgets import calculator

    calls = []

    def fn(a, b, c):
        calls.append((a, b, c))
        return {"sum": a + b + c, "label <b>": "text", "fits": a > 1}

    box = calculator(fn, {"a": ipywidgets.IntSlider(value=1, min=0, max=5),
                          "b": ipywidgets.Dropdown(options=[2, 4], value=2)}, fixed={"c": 0.5})
    assert calls == [(1, 2, 0.5)]
    box.children[0].children[0].value = 3
    assert calls[-1] == (3, 2, 0.5)
    table = box.children[-1].value
    assert "<b>5.5</b>" in table and "label &lt;b&gt;" in table and "True" in table
