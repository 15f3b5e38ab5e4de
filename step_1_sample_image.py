"""Step 1: get a photo to experiment on, with no download: scikit-image ships a few."""

from adversarial.plumbing.script import run

from pathlib import Path

from PIL import Image

from adversarial.plumbing.cli import ArgumentParser
from adversarial.plumbing.files import PHOTO, check_image_output, check_outputs, write_atomically
from adversarial.plumbing.samples import PHOTOS, sample_pixels


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--name", choices=list(PHOTOS), default="coffee", help="which photo")
    parser.add_argument("--output", type=Path, help="where to save it (default: assets/NAME.png)")
    args = parser.parse_args(argv)

    output = args.output or Path("assets") / f"{args.name}.png"
    image_format = check_image_output(output, PHOTO)
    check_outputs([output], [])
    image = Image.fromarray(sample_pixels(args.name))
    write_atomically(output, lambda tmp: image.save(tmp, format=image_format))
    print(f"Saved scikit-image's '{args.name}' photo to {output} ({image.width}x{image.height})")


if __name__ == "__main__":
    run(main)
