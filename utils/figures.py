"""The pictures the scripts save: the comparison strip of step 5, and curves for the sweeps."""

from PIL import Image, ImageDraw, ImageFont

from utils.images import to_uint8

CAPTION_HEIGHT = 44
MARGIN = 8
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def amplified_difference(original, adversarial):
    """(adversarial - original) scaled so its largest change spans the full grey range.

    Mid-grey is "no change"; returns the image and the gain applied.
    """
    difference = adversarial - original
    gain = 0.5 / max(difference.abs().max().item(), 1 / 255)
    return (0.5 + gain * difference).clamp(0, 1), gain


def comparison_writer(panels):
    """panels: [(pixels (1|-, 3, H, W) in [0, 1], caption lines)], side by side: a
    write(tmp) function that saves them as one PNG."""
    images = [Image.fromarray(to_uint8(pixels)) for pixels, _ in panels]
    width, height = images[0].size
    canvas = Image.new(
        "RGB",
        (len(images) * (width + MARGIN) + MARGIN, height + CAPTION_HEIGHT + 2 * MARGIN),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for column, (image, (_, caption)) in enumerate(zip(images, panels, strict=True)):
        left = MARGIN + column * (width + MARGIN)
        canvas.paste(image, (left, MARGIN))
        draw.multiline_text((left, height + MARGIN + 4), caption, fill="black", font=font)
    return lambda tmp: canvas.save(tmp, format="PNG")


def curves_writer(panels, x_values, path, xlabel, ylabel, mark=None):
    """Line plots side by side: panels is [(title, [(label, y values, matplotlib style)])];
    `mark` draws a dotted vertical line (label, x) in each. Returns write(tmp), which saves
    the figure as PNG, PDF or SVG by the suffix of `path`."""
    from matplotlib.figure import Figure  # only here: only the sweeps draw, and it is slow

    # The object-oriented API renders off-screen and never opens a window.
    figure = Figure(figsize=(6.4 * len(panels), 4), layout="constrained")
    all_axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (title, curves) in zip(all_axes, panels, strict=True):
        for name, values, style in curves:
            axes.plot(x_values, values, style, label=name)
        if mark is not None:
            axes.axvline(mark[1], color="grey", linestyle=":", label=mark[0])
        axes.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, 1.02), title=title, xticks=x_values)
        axes.legend()
    fmt = str(path).rsplit(".", 1)[-1].lower()
    return lambda tmp: figure.savefig(tmp, format=fmt, dpi=120)
