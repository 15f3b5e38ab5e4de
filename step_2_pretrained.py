"""Step 2: ask a pretrained ImageNet classifier what is in an image (or in many)."""

from pathlib import Path

import torch

from utils.cli import ArgumentParser, UserError, add_model_arguments, positive_int, run
from utils.images import image_batches, list_images, load_image_tensor, one_file_given
from utils.labels import label
from utils.models import load_model, pick_device, predict


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--topk", type=positive_int, help="also list the K most likely classes")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per batch")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    add_model_arguments(parser)
    args = parser.parse_args()

    paths = list_images(args.images)
    one_image = one_file_given(args.images)
    x = load_image_tensor(paths[0]) if one_image else None  # a bad file fails before the model
    model = load_model(args.model, args.weights, pick_device(args.device))
    if one_image:
        classify_one(model, x, args.topk)
    else:
        classify_many(model, paths, args.batch_size)


def classify_one(model, x, topk):
    probabilities = predict(model, x)[0]
    print(f"Prediction: {label(probabilities.argmax())}")
    if topk:
        top = probabilities.topk(min(topk, len(probabilities)))
        for probability, index in zip(top.values, top.indices, strict=True):
            print(f"{probability:8.2%}  {label(index)}")


def classify_many(model, paths, batch_size):
    """In batches, with a progress bar; one line per image, unreadable files reported."""
    rows, unreadable = [], 0
    for images, errors in image_batches(paths, batch_size, "classifying"):
        unreadable += len(errors)
        if images:
            probabilities = predict(model, torch.cat(list(images.values())))
            rows += zip(images, probabilities.max(1).values, probabilities.argmax(1), strict=True)
    width = max((len(str(path)) for path, _, _ in rows), default=0)
    for path, probability, index in rows:
        print(f"{path!s:<{width}}  {probability:6.1%}  {label(index)}")
    if unreadable:
        raise UserError(f"{unreadable} of {len(paths)} files could not be read (see above)")


if __name__ == "__main__":
    run(main)
