"""Step 1: get a photo to experiment on, with no download: scikit-image ships a few, and
foolbox ships 20 ImageNet validation photos with their true classes (--name imagenet: all)."""

from adversarial.plumbing.script import run

from pathlib import Path

from PIL import Image, PngImagePlugin

from adversarial.plumbing.cli import ArgumentParser
from adversarial.plumbing.files import PHOTO, check_image_output, check_outputs, write_all
from adversarial.plumbing.labels import label
from adversarial.plumbing.samples import (
    IMAGENET_PHOTOS,
    PHOTOS,
    TRUE_CLASS,
    sample_pixels,
    true_class,
)

ALL_IMAGENET = "imagenet"


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "--name",
        choices=[*PHOTOS, ALL_IMAGENET],
        default="coffee",
        help="which photo (imagenet: all 20 labelled ImageNet photos, saved in a folder)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to save it (default: assets/NAME.png; for imagenet a folder, assets/imagenet)",
    )
    args = parser.parse_args(argv)

    if args.name == ALL_IMAGENET:
        folder = args.output or Path("assets") / ALL_IMAGENET
        outputs = {name: folder / f"{name}.png" for name in IMAGENET_PHOTOS}
    else:
        outputs = {args.name: args.output or Path("assets") / f"{args.name}.png"}
    formats = {name: check_image_output(path, PHOTO) for name, path in outputs.items()}
    check_outputs(list(outputs.values()), [])
    images = {name: Image.fromarray(sample_pixels(name)) for name in outputs}
    write_all(
        {path: photo_writer(images[name], name, formats[name]) for name, path in outputs.items()}
    )
    if args.name == ALL_IMAGENET:
        print(
            f"Saved foolbox's {len(outputs)} labelled ImageNet photos to {folder} "
            f"({IMAGENET_PHOTOS[0]}.png ... {IMAGENET_PHOTOS[-1]}.png, true class in each PNG)"
        )
    elif args.name in IMAGENET_PHOTOS:
        image, path = images[args.name], outputs[args.name]
        print(
            f"Saved foolbox's ImageNet photo '{args.name}' to {path} "
            f"({image.width}x{image.height}), true class: {label(true_class(args.name))}"
        )
    else:
        image, path = images[args.name], outputs[args.name]
        print(f"Saved scikit-image's '{args.name}' photo to {path} ({image.width}x{image.height})")


def photo_writer(image, name, image_format):
    """A write(tmp) function for one sample photo. A labelled photo saved as PNG records
    its true class in a text chunk, where step 2 reads it."""
    options = {"format": image_format}
    if true_class(name) is not None and image_format == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_text(TRUE_CLASS, str(true_class(name)))
    return lambda tmp: image.save(tmp, **options)


if __name__ == "__main__":
    run(main)
