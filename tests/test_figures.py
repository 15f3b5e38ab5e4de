"""The plots read right: labelled axes, every line in the legend, the legend beside the data
(never over it), nothing outside the figure, shares in percent, step functions as steps."""

import math
from types import SimpleNamespace

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ticker import PercentFormatter

from adversarial import smoothing
from adversarial.plumbing.figures import (
    Curve,
    bars_figure,
    curves_figure,
    distributions_figure,
)
from adversarial.query_budget import success_curve, success_steps


def drawn(figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # lays the figure out (constrained layout) as savefig does
    return canvas.get_renderer()


def test_labels_legend_beside_the_data_and_nothing_outside():
    curves = [
        ("adversarial: goldfish", [0.9, 0.5, 0.1], "ro-", 0.95),
        ("original: espresso", [0.2, 0.6, 0.8], "go--", 0.1),
    ]
    figure = curves_figure(
        [("JPEG vs adversarial.png", curves)], [50, 75, 90], "JPEG quality", "probability",
        baseline="without JPEG",
    )  # fmt: skip
    renderer = drawn(figure)
    (axes,) = figure.axes
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("JPEG quality", "probability")
    legend = axes.get_legend()
    entries = [text.get_text() for text in legend.get_texts()]
    assert entries == [
        "adversarial: goldfish",
        "adversarial: goldfish, without JPEG",
        "original: espresso",
        "original: espresso, without JPEG",
    ]
    box, inside = legend.get_window_extent(renderer), axes.get_window_extent(renderer)
    assert not box.overlaps(inside)  # beside the axes: it hides no curve
    page = figure.bbox
    for artist in [legend, axes.title, axes.xaxis.label, axes.yaxis.label]:
        extent = artist.get_window_extent(renderer)
        assert page.x0 <= extent.x0 and extent.x1 <= page.x1, artist
        assert page.y0 <= extent.y0 and extent.y1 <= page.y1, artist


def test_shares_in_percent_and_step_functions_as_steps():
    steps = Curve("epsilon 4/255", [0.0, 0.5, 0.75], "b-", x=[2, 30, 700], steps=True)
    figure = curves_figure([("t", [steps])], [2, 10, 100, 1000], "queries", "fooled", percent=True)
    drawn(figure)
    (axes,) = figure.axes
    assert isinstance(axes.yaxis.get_major_formatter(), PercentFormatter)
    (line,) = axes.get_lines()
    assert line.get_drawstyle() == "steps-post"
    assert list(line.get_xdata()) == [2, 30, 700]


def test_a_share_beside_a_distance_is_in_percent_and_the_distance_is_not():
    panels = [("L2", [("median", [40.0, 20.0], "bo-")]), ("shares", [("within 3", [0, 0.5], "g-")])]
    figure = curves_figure(
        panels, [100, 1000], "queries", ["L2", "share"], yscales=["log", "linear"], percent=True
    )
    drawn(figure)
    distance, share = figure.axes[:2]
    assert not isinstance(distance.yaxis.get_major_formatter(), PercentFormatter)
    assert isinstance(share.yaxis.get_major_formatter(), PercentFormatter)


def test_the_success_steps_meet_the_table_at_every_budget():
    steps = torch.tensor([2, 7, 7, 40, 1000, 3])
    success = torch.tensor([True, True, True, True, False, True])
    result = SimpleNamespace(success=success, steps=steps)  # what the two functions read
    x, y = success_steps(result, 2, 1000)
    assert x == sorted(x) and y == sorted(y)  # a non-decreasing step function
    for budget, share in zip(
        [2, 5, 10, 50, 100, 1000], success_curve(result, [2, 5, 10, 50, 100, 1000]), strict=True
    ):
        held = max(i for i, q in enumerate(x) if q <= budget)  # steps-post: the value held
        assert y[held] == pytest.approx(share)


def test_certified_accuracy_steps_never_pass_the_largest_radius():
    labels = torch.tensor([0, 1, 2, 3, 4])
    classes = torch.tensor([0, 1, smoothing.ABSTAIN, 3, 9])  # two right ones not certified
    radii = torch.tensor([0.3, 0.8, 0.0, 0.5, 0.4])
    x, y = smoothing.certified_steps(classes, radii, labels, 2.0)
    assert x[0] == 0 and x[-1] == 2.0 and y[0] == pytest.approx(3 / 5) and y[-1] == 0
    assert y == sorted(y, reverse=True)
    for r in [0.1, 0.35, 0.45, 0.55, 0.79, 0.85, 1.5]:  # between the steps
        held = max(i for i, at in enumerate(x) if at <= r)
        expected = smoothing.certified_accuracy(classes, radii, labels, r)
        assert y[held] == pytest.approx(expected), r
    assert all(at <= 0.8 or share == 0 for at, share in zip(x, y, strict=True))
    assert x[-2] == pytest.approx(0.8)  # the largest certified radius, then 0


def test_the_scoreboards_bars_name_every_attack_and_keep_the_legend_off_them():
    names = ["FGSM: does not fool", "DeepFool L2", "CW-L2"]
    series = {"as saved (PNG)": [3.1, 0.9, 0.8], "on floats": [math.nan, 0.8, 0.6]}
    figure = bars_figure([("L2", series), ("L0", series)], names)
    renderer = drawn(figure)
    first, last = figure.axes
    assert [label.get_text() for label in first.get_yticklabels()] == names
    assert [axes.get_title() for axes in figure.axes] == ["L2", "L0"]
    assert [axes.get_xscale() for axes in figure.axes] == ["log", "log"]
    legend = last.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == list(series)
    assert not legend.get_window_extent(renderer).overlaps(last.get_window_extent(renderer))
    extent, page = legend.get_window_extent(renderer), figure.bbox
    assert page.x0 <= extent.x0 and extent.x1 <= page.x1


def test_minimal_sizes_per_model_a_box_and_every_value_a_dot():
    names = ["standard", "none fooled", "trained"]
    l2 = [[0.4, 0.5, 0.7, 0.9], [], [0.8, 1.1]]
    figure = distributions_figure([("L2", "L2 (pixels)", l2), ("L-inf", "levels", l2)], names)
    renderer = drawn(figure)
    first, _ = figure.axes
    assert [label.get_text() for label in first.get_yticklabels()] == names
    assert [axes.get_xscale() for axes in figure.axes] == ["log", "log"]
    assert first.get_xlabel() == "L2 (pixels)"
    dots = [line for line in first.get_lines() if line.get_marker() == "o"]
    assert [sorted(line.get_xdata()) for line in dots] == [l2[0], l2[2]]  # none for no values
    assert [set(line.get_ydata()) for line in dots] == [{0}, {2}]  # each on its model's row
    page = figure.bbox
    for axes in figure.axes:
        extent = axes.get_tightbbox(renderer)
        assert page.x0 <= extent.x0 and extent.x1 <= page.x1
