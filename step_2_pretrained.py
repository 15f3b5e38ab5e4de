"""Step 2: ask a pretrained ImageNet classifier what is in an image (or in many)."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial.models import load_model, pick_device, predict
from adversarial.plumbing.batches import Summary, image_batches, list_images, one_file_given
from adversarial.plumbing.cli import ArgumentParser, add_model_arguments, int_in
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import NUM_CLASSES, label
from adversarial.plumbing.samples import recorded_true_class

LABELLED_COLUMNS = ("true class", "right", "top 5")  # right: the true class is the top one


def parse_args(argv):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument(
        "--topk", type=int_in(1, NUM_CLASSES), help="also list the K most likely classes"
    )
    parser.add_argument(
        "--batch-size", type=int_in(1, 1024), default=32, help="images per batch (1..1024)"
    )
    add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    paths = list_images(args.images)
    one_image = one_file_given(args.images)
    x = load_image_tensor(paths[0]) if one_image else None  # a bad file fails before the model
    model = load_model(args.model, args.weights, pick_device(args.device))
    if one_image:
        classify_one(model, x, args.topk, recorded_true_class(paths[0]))
    else:
        classify_many(model, paths, args.batch_size)


def classify_one(model, x, topk, true_class):
    probabilities = predict(model, x)[0]
    print(f"Prediction: {label(probabilities.argmax())}")
    if true_class is not None:  # a labelled photo from step 1
        print(f"True class: {label(true_class)}")
    if topk:
        top = probabilities.topk(topk)
        for probability, index in zip(top.values, top.indices, strict=True):
            print(f"{probability:8.2%}  {label(index)}")


def classify_many(model, paths, batch_size):
    """In batches, with a progress bar; one row per image, unreadable files reported. For
    labelled photos (step 1's), the true class too, and how many the model got right."""
    rows, unreadable = [], []
    for images in image_batches(paths, batch_size, "classifying", on_error=unreadable.append):
        probabilities = predict(model, torch.cat(list(images.values())))
        for path, p in zip(images, probabilities, strict=True):
            row = {"image": path, "p": f"{p.max():.1%}", "prediction": label(p.argmax())}
            true_class = recorded_true_class(path)
            if true_class is not None:
                top5 = p.topk(5).indices.tolist()
                row["true class"] = label(true_class)
                row["right"] = "yes" if top5[0] == true_class else "no"
                row["top 5"] = "yes" if true_class in top5 else "no"
            rows.append(row)
    labelled = sum("true class" in row for row in rows)
    summary = Summary("image", "p", "prediction", *(LABELLED_COLUMNS if labelled else ()))
    for row in rows:
        summary.add(**row)
    summary.report()
    if labelled:
        top1, top5 = summary.count("right", "yes"), summary.count("top 5", "yes")
        print(
            f"Accuracy on {labelled} labelled photos: top-1 {top1}/{labelled} "
            f"({top1 / labelled:.0%}), top-5 {top5}/{labelled} ({top5 / labelled:.0%})"
        )
    if unreadable:
        raise UserError(f"{len(unreadable)} of {len(paths)} files could not be read (see above)")


if __name__ == "__main__":
    run(main)
