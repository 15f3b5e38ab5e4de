"""Many images at once: folders expanded, images read in batches with a progress bar, and a
summary table (also saved as CSV), and step 5 on many images. Steps 2 and 5 use it when
given more than one file."""

import functools
import sys
from pathlib import Path

import torch

from adversarial.attacks import attack_labels
from adversarial.models import predict
from adversarial.plumbing.errors import AttackFailed, UserError
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import label
from adversarial.plumbing.outputs import linf_levels, save_outputs
from adversarial.plumbing.progress import progress
from adversarial.plumbing.tables import print_table, save_csv


def list_images(paths):
    """Expand folders into their files (sorted, hidden files skipped); keep files as given,
    each once."""
    files = []
    for path in map(Path, paths):
        try:
            if path.is_dir():
                found = (p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
                files += sorted(found)
            elif path.exists():
                files.append(path)
            else:
                raise UserError(f"{path}: no such file or folder")
        except OSError as err:  # e.g. a name longer than the system allows, an unreadable folder
            raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    if not files:
        raise UserError(f"no files found in {', '.join(map(str, paths))}")
    # The same file named twice (or through a folder too) is read once.
    unique = {file.resolve(): file for file in reversed(files)}
    return [file for file in files if unique[file.resolve()] is file]


def one_file_given(inputs):
    """True when the command line names a single file (not a folder): the script then tells
    the tutorial's one-image story instead of printing a table."""
    return len(inputs) == 1 and not Path(inputs[0]).is_dir()


def image_batches(paths, batch_size, description, on_error):
    """Yield {path: crop (1, 3, 224, 224)} per batch, with a progress bar.

    A file that cannot be read is reported on stderr, passed to on_error(path) and
    skipped, so one bad file in a folder does not stop the rest.
    """
    with progress(total=len(paths), unit="image", what=description) as bar:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            images = {}
            for path in batch:
                try:
                    images[path] = load_image_tensor(path)
                except UserError as err:
                    bar.write(f"error: {err}", file=sys.stderr)
                    on_error(path)
            if images:
                yield images
            bar.update(len(batch))


class Summary:
    """One row per image: printed as a table at the end, and saved as CSV when asked."""

    def __init__(self, *columns):
        self.columns = columns
        self.rows = []

    def add(self, *cells, **named):
        """A row: cells in column order, or by column name; columns not given stay empty."""
        named.update(zip(self.columns, cells, strict=False))
        self.rows.append({column: str(named.pop(column, "")) for column in self.columns})
        if named or len(cells) > len(self.columns):
            raise ValueError(f"cells that fit no column: {cells}, {named}")

    def count(self, column, value):
        return sum(row[column] == value for row in self.rows)

    def report(self, csv_path=None):
        rows = [list(row.values()) for row in self.rows]
        print_table(self.columns, rows)
        if csv_path is not None:
            save_csv(csv_path, self.columns, rows)
            print(f"Summary written to {csv_path}")


def attack_all(attack, paths, target, outputs, batch_size, title):
    """Step 5 on many images: every image in batches through the same attack, its files
    saved when it is fooled, one row each in a summary table (also saved as CSV)."""
    summary = Summary("image", "original", "final", "success", "steps", "linf_levels", "note")
    unreadable = functools.partial(summary.add, success="no", note="not a readable image")
    for images in image_batches(paths, batch_size, "attacking", on_error=unreadable):
        x = torch.cat(list(images.values()))
        clean = predict(attack.models[0], x)  # an ensemble's first model: the classes shown
        original = clean.argmax(1)
        result = attack(x, attack_labels(original, target))
        for i, path in enumerate(images):
            final = result.probabilities[i].cpu()
            x_adversarial = result.adversarial[i : i + 1].cpu()
            already = target == original[i]
            fooled = bool(result.success[i]) and not already
            if fooled:
                files = outputs.per_image[path]
                save_outputs(
                    attack.models, x[i], x_adversarial, clean[i], final, files, target, title
                )
            note = ""
            if already:
                note = "already the target"
            elif not fooled:
                note = "not fooled"
            summary.add(
                image=path,
                original=label(original[i]),
                final=label(final.argmax()),
                success="yes" if fooled else "no",
                steps=int(result.steps[i]),
                linf_levels=linf_levels(x[i], x_adversarial) if fooled else "",
                note=note,
            )
    summary.report(outputs.summary)
    if failed := summary.count("success", "no"):
        raise AttackFailed(f"{failed} of {len(summary.rows)} images not fooled (see the notes)")
