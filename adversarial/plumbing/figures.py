"""The pictures the scripts save: the comparison strip of step 5, and curves for the sweeps."""

import logging
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from adversarial.plumbing.images import to_uint8

CAPTION_HEIGHT = 44
TITLE_HEIGHT = 20
MARGIN = 8
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def amplified_difference(original, adversarial):
    """(adversarial - original) scaled so its largest change spans the full grey range.

    Mid-grey is "no change"; returns the image and the gain applied.
    """
    difference = adversarial - original
    gain = 0.5 / max(difference.abs().max().item(), 1 / 255)
    return (0.5 + gain * difference).clamp(0, 1), gain


def comparison_writer(panels, title):
    """panels: [(pixels (1|-, 3, H, W) in [0, 1], caption lines)], side by side under a
    one-line title: a write(tmp) function that saves them as one PNG."""
    images = [Image.fromarray(to_uint8(pixels)) for pixels, _ in panels]
    width, height = images[0].size
    canvas = Image.new(
        "RGB",
        (
            len(images) * (width + MARGIN) + MARGIN,
            TITLE_HEIGHT + height + CAPTION_HEIGHT + 2 * MARGIN,
        ),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    draw.text((MARGIN, MARGIN), title, fill="black", font=font)
    top = MARGIN + TITLE_HEIGHT
    for column, (image, (_, caption)) in enumerate(zip(images, panels, strict=True)):
        left = MARGIN + column * (width + MARGIN)
        canvas.paste(image, (left, top))
        draw.multiline_text((left, top + height + 4), caption, fill="black", font=font)
    return lambda tmp: canvas.save(tmp, format="PNG")


class Curve(NamedTuple):
    """One curve of curves_writer. A plain tuple (label, y, style[, baseline]) will do."""

    label: str
    y: object  # values at curves_writer's x_values, or at `x`
    style: str  # matplotlib's: a colour, a marker, a line, e.g. "ro-"
    baseline: float | None = None  # drawn as a dotted line of the same colour
    x: object = None  # the curve's own x values (default: the plot's)
    steps: bool = False  # a step function: each value holds until the next x


def curves_writer(panels, x_values, path, *axes, **options):
    """write(tmp), which saves curves_figure(panels, x_values, *axes, **options) as PNG, PDF
    or SVG by the suffix of `path`."""
    figure = curves_figure(panels, x_values, *axes, **options)
    fmt = str(path).rsplit(".", 1)[-1].lower()
    return lambda tmp: figure.savefig(tmp, format=fmt, dpi=120)


def curves_figure(
    panels,
    x_values,
    xlabel,
    ylabel,
    mark=None,
    xscale="linear",
    percent=False,
    baseline="without it",
    yscales=None,
):
    """Line plots side by side: panels is [(title, curves)], each curve a Curve or a tuple
    (label, y values, style[, baseline]). A baseline is a dotted horizontal line of the
    curve's colour, in the legend as "label, `baseline`" (e.g. "without JPEG"). `mark` draws
    a dotted vertical line (label, x) in each, or one per item of a list of (label, x,
    colour); xscale "log" spaces x logarithmically (e.g. queries, from 2 to 10,000);
    percent: each linear y axis (a share) in percent of 1, as the tables print shares; a log
    axis (a distance) keeps its numbers. ylabel: one for all
    panels or one per panel; yscales: per panel, "linear" (a share: from 0 to 1) or "log".
    The legend sits beside the axes, never over the data."""
    Figure = _matplotlib_figure()
    from matplotlib.ticker import PercentFormatter

    # The object-oriented API renders off-screen and never opens a window.
    figure = Figure(figsize=(9.6 * len(panels), 4), layout="constrained")
    all_axes = figure.subplots(1, len(panels), squeeze=False)[0]
    ylabels = [ylabel] * len(panels) if isinstance(ylabel, str) else ylabel
    for axes, (title, curves), label_y, yscale in zip(
        all_axes, panels, ylabels, yscales or ["linear"] * len(panels), strict=True
    ):
        for curve in (Curve(*c) for c in curves):
            x = x_values if curve.x is None else curve.x
            drawstyle = "steps-post" if curve.steps else "default"
            (line,) = axes.plot(
                x, curve.y, curve.style, label=_literal(curve.label), drawstyle=drawstyle
            )
            if curve.baseline is not None:
                label = _literal(f"{curve.label}, {baseline}")
                axes.axhline(
                    float(curve.baseline), color=line.get_color(), linestyle=":", label=label
                )
        marks = [] if mark is None else mark if isinstance(mark, list) else [(*mark, "grey")]
        for label, x, color in marks:
            axes.axvline(x, color=color, linestyle=":", label=label)
        axes.set(xlabel=xlabel, ylabel=label_y, title=_literal(title))
        axes.set_yscale(yscale)
        if yscale == "linear":
            axes.set_ylim(0, 1.02)
        axes.set_xscale(xscale)
        axes.set_xticks(x_values, [f"{x:g}" for x in x_values])
        if percent and yscale == "linear":
            axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        # Beside the axes (constrained layout makes room): it covers no curve.
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return figure


def bars_writer(panels, names, path):
    """write(tmp), which saves bars_figure(panels, names) by the suffix of `path`."""
    figure = bars_figure(panels, names)
    fmt = str(path).rsplit(".", 1)[-1].lower()
    return lambda tmp: figure.savefig(tmp, format=fmt, dpi=120)


def bars_figure(panels, names):
    """Horizontal bars side by side: panels is [(title, {series: value per name})], one
    group of bars per name (an attack, a model), one bar per series (on floats, as saved);
    a NaN (or, on a log scale, a 0) draws no bar. Each panel has its own scale, logarithmic:
    sizes that differ a hundredfold stay readable side by side. The legend sits beside the
    last panel."""
    Figure = _matplotlib_figure()
    from matplotlib.ticker import NullFormatter

    figure = Figure(figsize=(3.6 * len(panels) + 2.4, 0.5 * len(names) + 1.4), layout="constrained")
    all_axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for axes, (title, series) in zip(all_axes, panels, strict=True):
        height = 0.8 / len(series)
        for i, (label, values) in enumerate(series.items()):
            rows = [k + i * height for k in range(len(names))]
            axes.barh(rows, values, height, label=_literal(label))
        middle = [k + height * (len(series) - 1) / 2 for k in range(len(names))]
        axes.set_yticks(middle, [_literal(name) for name in names])
        axes.set_title(_literal(title))
        axes.set(xscale="log", xlabel="log scale")
        axes.xaxis.set_minor_formatter(NullFormatter())  # 2x10^4, 3x10^4 ... overlapped
    all_axes[0].invert_yaxis()  # the first name at the top, as in the table
    all_axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return figure


def distributions_writer(panels, names, path):
    """write(tmp), which saves distributions_figure(panels, names) by the suffix of `path`."""
    figure = distributions_figure(panels, names)
    fmt = str(path).rsplit(".", 1)[-1].lower()
    return lambda tmp: figure.savefig(tmp, format=fmt, dpi=120)


def distributions_figure(panels, names):
    """Each name's values (a model's minimal sizes over its photos) as a box from the first
    to the third quartile, the median a line, whiskers to the smallest and largest, and
    every value a dot: panels is [(title, x label, [values of each name])], side by side,
    one row per name, on a logarithmic scale; a name without values draws no box."""
    Figure = _matplotlib_figure()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = Figure(figsize=(4.8 * len(panels) + 1.6, 0.6 * len(names) + 1.6), layout="constrained")
    all_axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for axes, (title, xlabel, values) in zip(all_axes, panels, strict=True):
        drawn = [(row, list(v)) for row, v in enumerate(values) if len(v)]
        axes.boxplot(
            [v for _, v in drawn],
            positions=[row for row, _ in drawn],
            orientation="horizontal",
            whis=(0, 100),  # whiskers to the extremes: no point is called an outlier
            widths=0.5,
            showfliers=False,
        )
        for row, v in drawn:
            axes.plot(v, [row] * len(v), "o", color="black", alpha=0.4, markersize=3)
        axes.set(title=_literal(title), xlabel=_literal(xlabel), xscale="log")
        # Ticks at 1, 2 and 5 of each decade, written plainly: sizes within one decade
        # (most models' L2) still get numbers.
        axes.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_yticks(range(len(names)), [_literal(name) for name in names])
    all_axes[0].invert_yaxis()  # the first name at the top, as in the table
    return figure


def _matplotlib_figure():
    """matplotlib's Figure class, imported only here (only the sweeps draw, and the import
    is slow) with matplotlib's notices held back meanwhile: where its config folder cannot
    be written (HOME read-only, missing or a file, and no MPLCONFIGDIR), it makes a
    temporary one at every run and says so on stderr, and may add that it is building its
    font cache there. Its warnings while drawing (a missing font, say) still show."""
    logger = logging.getLogger("matplotlib")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from matplotlib.figure import Figure
    finally:
        logger.setLevel(level)
    return Figure


def _literal(text):
    """Text as written: matplotlib would read "$5 vs $10" in a file name as mathematics."""
    return text.replace("$", r"\$")
