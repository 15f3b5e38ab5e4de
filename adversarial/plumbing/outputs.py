"""What step 5 writes for each image it fools: the adversarial PNG, the tutorial's r file and
the comparison picture, planned and checked before any work, written all at once."""

from pathlib import Path
from typing import NamedTuple

from PIL import Image, PngImagePlugin

from adversarial.models import MODELS, device_of
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.figures import amplified_difference, comparison_writer
from adversarial.plumbing.files import check_outputs, write_all
from adversarial.plumbing.images import checked_image_writer
from adversarial.plumbing.labels import recorded_class, short_label
from adversarial.plumbing.perturbations import perturbation_writer

NAMES = ("adversarial.png", "adversarial_r.npy", "comparison.png")


class Outputs(NamedTuple):
    per_image: dict  # input path -> {name: output path}
    summary: Path | None  # summary.csv, for many images


def plan_outputs(paths, output_dir, one_image, other_inputs=()):
    """Every output path of the run, checked before any work: none may overwrite an input
    (an image, a file in a folder given as input, or `other_inputs` such as a weights
    file), a folder, or another output."""
    per_image, owners = {}, {}
    for path in paths:
        prefix = "" if one_image else f"{path.stem}_"
        if prefix in owners:
            raise UserError(
                f"{owners[prefix]} and {path} would both be saved as "
                f"{Path(output_dir) / (prefix + NAMES[0])}: rename one, or attack them apart"
            )
        owners[prefix] = path
        per_image[path] = {name: Path(output_dir) / f"{prefix}{name}" for name in NAMES}
    summary = None if one_image else Path(output_dir) / "summary.csv"
    every = [file for files in per_image.values() for file in files.values()]
    check_outputs(every + ([summary] if summary else []), [*paths, *other_inputs])
    return Outputs(per_image, summary)


def provenance(path):
    """(made on: model names, target class or None if untargeted, original class) from a
    PNG step 5 wrote; (None, None, None) for any other image. The records are checked:
    a file anyone can edit must name known models and classes."""
    with Image.open(path) as image:
        text = getattr(image, "text", {})
    if not {"made on", "target", "original"} <= text.keys():
        return None, None, None
    made_on = text["made on"].split(",")
    classes = [text["original"], *([text["target"]] if text["target"] else [])]
    if not (
        set(made_on) <= set(MODELS) - {"auto"}
        and all(recorded_class(c) is not None for c in classes)
    ):
        raise UserError(f"{path}: its 'made on', 'target' or 'original' record is damaged")
    target = recorded_class(text["target"]) if text["target"] else None
    return made_on, target, recorded_class(text["original"])


def view_names(models, jpeg_qualities):
    """What each row of an attack's logits is: every model, and for each the PNG and its
    JPEG views (step 5's --through-jpeg), in the order the attack computes them."""
    views = ["the PNG", *(f"JPEG {quality}" for quality in jpeg_qualities)]
    if len(models) == 1:
        return views
    return [f"{model.name}, {view}" for model in models for view in views]


def linf_levels(x, adversarial):
    """Largest change of any pixel channel, in 8-bit levels."""
    return int(((adversarial - x).abs().max() * 255).round())


def caption(probabilities):
    """'goldfish 43%': the first name of the top label and its probability."""
    index = int(probabilities.argmax())
    return f"{short_label(index)} {probabilities[index]:.0%}"


def save_outputs(models, x, adversarial, clean, final, files, target, title):
    """Write the three files for one image x (1, 3, H, W) and its adversarial version
    (on the CPU), all or none; r is in the first model's normalised space. The PNG records
    how it was made (text chunks, see `provenance`): step 9 reads them. `title` heads the
    comparison picture (the models, the method, epsilon)."""
    metadata = PngImagePlugin.PngInfo()
    metadata.add_text("made on", ",".join(model.name for model in models))
    metadata.add_text("target", "" if target is None else str(target))
    metadata.add_text("original", str(int(clean.argmax())))
    model = models[0]
    # The file must be what was judged: read back when written.
    write_png = checked_image_writer(adversarial, files["adversarial.png"], pnginfo=metadata)

    # The tutorial's r lives in the model's normalised space.
    device = device_of(model)
    r = model.normalize(adversarial.to(device)) - model.normalize(x.to(device))
    difference, gain = amplified_difference(x, adversarial)
    panels = [
        (x, f"original\n{caption(clean)}"),
        (adversarial, f"adversarial (PNG)\n{caption(final)}"),
        (difference, f"perturbation x{gain:.0f}\nmax {linf_levels(x, adversarial)}/255"),
    ]
    writers = [write_png, perturbation_writer(r), comparison_writer(panels, title)]
    write_all(dict(zip((files[name] for name in NAMES), writers, strict=True)))
