"""Step 15's measurements: one perturbation (or one patch) fitted on some photos, judged
on others, beside random noise of the same size.

`split_photos` halves the labelled photos; `save_v` writes v as .npy and magnified;
`fooling_table` judges the saved universal perturbation on each model and set of photos
(step 9's judge: the photos a model gets right, fooled when their class changes);
`on_digits` does it for step 7's models; `judge_patches` pastes each patch on the photos,
saves them as one mosaic PNG per patch and judges them as read back.
"""

import numpy as np
import torch
from PIL import Image

from adversarial.attacks.noise import random_signs
from adversarial.attacks.universal import classes
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.figures import amplified_difference, comparison_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.images import from_uint8, image_writer, to_uint8
from adversarial.plumbing.labels import label
from adversarial.plumbing.progress import each, note
from adversarial.plumbing.samples import IMAGENET_PHOTOS, SKIMAGE_PHOTOS, sample_photo, true_class
from adversarial.plumbing.tables import print_table
from adversarial.transfer import judge, percent, references
from adversarial.transforms import paste_patch, place_patch, random_placements


def split_photos(seed):
    """The 20 labelled photos in two halves drawn by the seed: (fitting, held-out) names."""
    order = torch.randperm(len(IMAGENET_PHOTOS), generator=torch.Generator().manual_seed(seed))
    names = [IMAGENET_PHOTOS[i] for i in order.tolist()]
    half = len(names) // 2
    return sorted(names[:half]), sorted(names[half:])


def photo_sets(fitting, held_out):
    """{set name: (x, true classes or None)}: the fitting and held-out labelled photos, and
    scikit-image's sample photos (no true class: each model's own clean class stands in)."""
    sets = {"fitting": fitting, "held-out": held_out, "samples": list(SKIMAGE_PHOTOS)}
    return {
        name: (torch.cat([sample_photo(p) for p in photos]), [true_class(p) for p in photos])
        for name, photos in sets.items()
    }


V_FILES = ("universal_r.npy", "universal.png")
PATCH_FILES = ("patch.png", "patched_adversarial.png", "patched_random.png", "patched_crop.png")


def output_files(output_dir, patch=False):
    """{file name: path}: what the universal perturbation (or, with patch, the patch) writes."""
    return {name: output_dir / name for name in (PATCH_FILES if patch else V_FILES)}


def save_v(files, model, v, photos, names):
    """universal_r.npy and universal.png (v magnified, beside the photos with v added),
    both or neither."""
    write_all(
        {
            files["universal_r.npy"]: npy_writer(v),
            files["universal.png"]: magnified_writer(model, v, photos, names),
        }
    )


def fooling_table(models, sets, v, xi, seed):
    """Per model and set of photos: of the photos the model gets right, the share whose
    class changes with v added, and with random signs of the same size on each photo."""
    header = ["model", "photos", "judged", "universal v", "random signs"]
    rows = []
    for model in models:
        for name, (x, truth) in sets.items():
            reference = references([model], x, truth)
            fooled = judge([model], (x + v).clamp(0, 1), reference)[model.name]
            noise = judge([model], random_signs(x, xi, seed), reference)[model.name]
            share = (percent(fooled.share_fooled), percent(noise.share_fooled))
            rows.append([model.name, f"{name} ({len(x)})", str(fooled.photos), *share])
    print_table(header, rows)
    return header, rows


def npy_writer(v):
    """A write(tmp) function: v as float32 (3, H, W), pixels of [0, 1]."""
    array = v.detach().cpu().numpy().astype(np.float32).reshape(v.shape[-3:])

    def write(tmp):
        with open(tmp, "wb") as file:  # a file object: np.save would append .npy to a name
            np.save(file, array, allow_pickle=False)

    return write


def magnified_writer(model, v, x, names):
    """The paper's picture: v magnified (mid-grey: no change), then photos with v added,
    each captioned with the model's class before and after."""
    picture, gain = amplified_difference(torch.zeros_like(v), v)
    panels = [(picture, f"v, magnified x{gain:.1f}\n(grey: no change)")]
    before, after = classes(model, x), classes(model, (x + v).clamp(0, 1))
    for image, name, b, a in zip(x, names, before, after, strict=True):
        caption = f"{name}: {short_label(b)}\n-> {short_label(a)}"
        panels.append(((image + v[0]).clamp(0, 1), caption))
    title = f"One perturbation for every photo: L-inf {v.abs().max() * 255:.0f}/255, {model.name}"
    return comparison_writer(panels, title)


def short_label(index):
    return label(int(index)).split(",")[0][:26]


def on_digits(models, x_train, x_test, y_test, xis, attack, seed):
    """Per digits model and xi: v fitted on the training digits by attack(model, xi), its
    fooling rate on them, and of the held-out digits each model gets right, the share whose
    class changes, beside random signs of the same size."""
    header = ["model", "xi", "fitting", "held-out judged", "universal v", "random signs"]
    rows = []
    for name, model in each(models, "digits models", unit="model"):
        for xi in xis:
            note(f"xi {xi:g}")
            result = attack(model, xi)(x_train)
            right = classes(model, x_test) == y_test
            x, y = x_test[right], y_test[right]
            fooled = (classes(model, (x + result.v).clamp(0, 1)) != y).float().mean().item()
            noise = random_signs(x, xi, seed)
            noisy = (classes(model, noise) != y).float().mean().item()
            rate = f"{result.fooling_rates[-1]:.0%}"
            rows.append([name, f"{xi:g}", rate, str(len(x)), f"{fooled:.0%}", f"{noisy:.0%}"])
    print_table(header, rows)


def judge_patches(model, files, photos, patches, per_photo, target, seed):
    """Each of `patches` ({kind: (3, side, side)}) pasted `per_photo` times on every photo,
    at the same random placements for all; saved (patch.png, one mosaic per kind), then
    judged as read back from the files."""
    side = patches["adversarial"].shape[-1]
    placements = placements_for(photos, side, per_photo, seed)
    write_all(patch_writers(files, photos, patches, placements))
    print(f"Saved {', '.join(str(path) for path in files.values())}")
    shares = covered(side, placements)
    print(f"\nPasted {per_photo} times on each of {len(photos)} photos (held-out and samples),")
    print(f"covering {min(shares):.2%} to {max(shares):.2%} of each (whole pixels, turned):")
    patch_table(model, files, photos, patches, per_photo, target)


def placements_for(photos, side, per_photo, seed):
    """The measurement's placements, the same for every patch: per_photo random placements
    (location, rotation) of each photo, at the stated size (scale 1)."""
    generator = torch.Generator().manual_seed(seed)
    return random_placements(len(photos) * per_photo, side, generator)


def baseline_patches(photo, side, seed):
    """{"random": uniform random levels, "crop": the photo's central side x side crop}."""
    generator = torch.Generator().manual_seed(seed + 1)
    corner = (photo.shape[-1] - side) // 2
    return {
        "random": (torch.rand(3, side, side, generator=generator) * 255).round() / 255,
        "crop": photo[:, corner : corner + side, corner : corner + side],
    }


def covered(side, placements):
    """The share of the image each placement of a side x side patch covers (whole pixels)."""
    ones = torch.ones(3, side, side)
    return [place_patch(ones, placement)[1].mean().item() for placement in placements]


def patched(photos, patch, placements):
    """Each photo len(placements) / len(photos) times, the patch pasted whole-pixel (nearest):
    every pixel is a photo's or the patch's, as a file holds them."""
    per_photo = len(placements) // len(photos)
    return paste_patch(photos.repeat_interleave(per_photo, 0), patch, placements)


def patch_writers(files, photos, patches, placements):
    """{path: write(tmp)}: patch.png, and each patch pasted on the photos, one mosaic PNG per
    patch (a row per photo)."""
    columns = len(placements) // len(photos)
    writers = {
        files[f"patched_{kind}.png"]: mosaic_writer(patched(photos, patch, placements), columns)
        for kind, patch in patches.items()
    }
    writers[files["patch.png"]] = patch_writer(patches["adversarial"], files["patch.png"])
    return writers


def mosaic_writer(tiles, columns):
    """A write(tmp) function: the tiles (N, 3, S, S) as one PNG, `columns` to a row."""
    rows = [torch.cat(list(tiles[i : i + columns]), dim=2) for i in range(0, len(tiles), columns)]
    image = Image.fromarray(to_uint8(torch.cat(rows, dim=1)))
    return lambda tmp: image.save(tmp, format="PNG")


def read_mosaic(path, size=224):
    """The tiles of a mosaic PNG, read back from the file: (N, 3, size, size), row by row."""
    with Image.open(path) as image:
        pixels = from_uint8(image.convert("RGB"))[0]
    return torch.stack([tile for row in pixels.split(size, 1) for tile in row.split(size, 2)])


def patch_table(model, files, photos, patches, per_photo, target):
    """Per patch, judged on its saved mosaic: the share of pasted photos classified as the
    target, and the share whose class (the model's, on the clean photo) changed."""
    clean = classes(model, photos).repeat_interleave(per_photo)
    rows = []
    for kind in patches:
        predicted = classes(model, read_mosaic(files[f"patched_{kind}.png"]))
        as_target = percent((predicted == target).float().mean().item())
        changed = percent((predicted != clean).float().mean().item())
        rows.append([f"{kind} patch", str(len(predicted)), as_target, changed])
    print_table(["pasted", "photos", short_label(target), "class changed"], rows)


def patch_writer(patch, path):
    """A write(tmp) function: the patch as a PNG at its size in a 224 x 224 input, read back:
    it must hold exactly the patch that was pasted and judged."""
    save = image_writer(patch, path)

    def write(tmp):
        save(tmp)
        with Image.open(tmp) as image:
            if not torch.equal(from_uint8(image.convert("RGB"))[0], patch):
                raise UserError(f"{path}: reloaded patch differs from the judged one")

    return write
