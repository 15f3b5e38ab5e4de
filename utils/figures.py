"""The picture a learner compares: original | adversarial | perturbation, captioned."""

from PIL import Image, ImageDraw, ImageFont

from utils.cli import write_atomically
from utils.images import to_uint8

CAPTION_HEIGHT = 44
MARGIN = 8


def amplified_difference(original, adversarial):
    """(adversarial - original) scaled so its largest change spans the full grey range.

    Mid-grey is "no change"; returns the image and the gain applied.
    """
    difference = adversarial - original
    gain = 0.5 / max(difference.abs().max().item(), 1 / 255)
    return (0.5 + gain * difference).clamp(0, 1), gain


def save_comparison(panels, path):
    """panels: [(pixels (1|-, 3, H, W) in [0, 1], caption lines)], saved side by side as PNG."""
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
    write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG"))
