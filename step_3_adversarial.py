"""Step 3: add a given perturbation r to an image and watch the prediction change.

As in the tutorial, r lives in the model's normalised space: the adversarial image is
inverse_normalize(normalize(x) + r), saved as an 8-bit PNG and classified as saved.
"""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial.models import load_model, predict
from adversarial.plumbing.cli import ArgumentParser, add_model_arguments
from adversarial.plumbing.files import check_outputs
from adversarial.plumbing.images import check_image_output, load_image_tensor, save_image
from adversarial.plumbing.labels import label
from adversarial.plumbing.perturbations import load_perturbation


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("image", type=Path, help="any image Pillow reads")
    parser.add_argument(
        "--perturbation",
        type=Path,
        default=Path("outputs/adversarial_r.npy"),
        help="r as .npy, shape (1, 3, 224, 224), in the model's normalised space "
        "(default: outputs/adversarial_r.npy, the one step 5 writes; or the tutorial's own)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("outputs/adversarial_from_r.png"), help="the image"
    )
    add_model_arguments(parser, device=False)
    args = parser.parse_args(argv)

    x = load_image_tensor(args.image)
    r = load_perturbation(args.perturbation)
    check_image_output(args.output)
    check_outputs([args.output], [args.image, args.perturbation, args.weights])
    model = load_model(args.model, args.weights)

    x_adversarial = model.denormalize(model.normalize(x) + r)
    save_image(x_adversarial, args.output)
    x_saved = load_image_tensor(args.output)  # classify the image that really exists

    original, unsaved, saved = predict(model, torch.cat([x, x_adversarial, x_saved])).argmax(1)
    print(f"Old prediction: {label(original)}")
    print(f"New prediction: {label(saved)}")
    if unsaved != saved:
        print(f"(before rounding to the 8-bit PNG, x + r was: {label(unsaved)})")


if __name__ == "__main__":
    run(main)
