"""The pictures the scripts save: the comparison strip of step 5, and curves for the sweeps."""

import logging

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


def curves_writer(panels, x_values, path, xlabel, ylabel, mark=None, xscale="linear", yscales=None):
    """Line plots side by side: panels is [(title, curves)], each curve (label, y values,
        matplotlib style with a colour, e.g. "ro-") or (label, y values, style, baseline): a
        baseline is drawn as a dotted horizontal line of the same colour (e.g. the value with
        no defense). `mark` draws a dotted vertical line (label, x) in each, or one per item of a
    list of (label, x, colour); xscale "log" spaces
        x logarithmically (e.g. queries, from 2 to 10,000). ylabel: one for all panels or
        one per panel; yscales: per panel, "linear" (a share: from 0 to 1) or "log". Returns
        write(tmp), which saves the figure as PNG, PDF or SVG by the suffix of `path`."""
    Figure = _matplotlib_figure()
    # The object-oriented API renders off-screen and never opens a window.
    figure = Figure(figsize=(6.4 * len(panels), 4), layout="constrained")
    all_axes = figure.subplots(1, len(panels), squeeze=False)[0]
    ylabels = [ylabel] * len(panels) if isinstance(ylabel, str) else ylabel
    for axes, (title, curves), label_y, yscale in zip(
        all_axes, panels, ylabels, yscales or ["linear"] * len(panels), strict=True
    ):
        for name, values, style, *baseline in curves:
            (line,) = axes.plot(x_values, values, style, label=_literal(name))
            if baseline:
                axes.axhline(float(baseline[0]), color=line.get_color(), linestyle=":")
        marks = [] if mark is None else mark if isinstance(mark, list) else [(*mark, "grey")]
        for label, x, color in marks:
            axes.axvline(x, color=color, linestyle=":", label=label)
        axes.set(xlabel=xlabel, ylabel=label_y, title=_literal(title))
        axes.set_yscale(yscale)
        if yscale == "linear":
            axes.set_ylim(0, 1.02)
        axes.set_xscale(xscale)
        axes.set_xticks(x_values, [f"{x:g}" for x in x_values])
        axes.legend()
    fmt = str(path).rsplit(".", 1)[-1].lower()
    return lambda tmp: figure.savefig(tmp, format=fmt, dpi=120)


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
