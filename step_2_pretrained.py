"""Step 2: ask a pretrained ImageNet classifier what is in an image."""

from pathlib import Path

from utils.cli import ArgumentParser, add_model_arguments, positive_int, run
from utils.images import load_image_tensor
from utils.labels import label
from utils.models import load_model, predict


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("image", type=Path, help="any image Pillow reads")
    parser.add_argument("--topk", type=positive_int, help="also list the K most likely classes")
    add_model_arguments(parser)
    args = parser.parse_args()

    x = load_image_tensor(args.image)
    model = load_model(args.model, args.weights)
    probabilities = predict(model, x)[0]

    print(f"Prediction: {label(probabilities.argmax())}")
    if args.topk:
        top = probabilities.topk(min(args.topk, len(probabilities)))
        for probability, index in zip(top.values, top.indices, strict=True):
            print(f"{probability:8.2%}  {label(index)}")


if __name__ == "__main__":
    run(main)
