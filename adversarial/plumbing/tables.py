"""One table printer for every table the scripts print, and its CSV twin."""

import csv

from adversarial.plumbing.files import write_atomically


def format_table(header, rows):
    """Lines of a plain-text table: columns padded to their widest cell; a column whose
    cells are all numbers (such as 12, 0.35 or 98.3%) is right-aligned."""
    table = [[str(cell) for cell in row] for row in [header, *rows]]
    columns = list(zip(*table, strict=True))
    widths = [max(map(len, column)) for column in columns]
    numeric = [all(map(_is_number, column[1:])) for column in columns]
    lines = []
    for row in table:
        cells = zip(row, widths, numeric, strict=True)
        lines.append("  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in cells).rstrip())
    return lines


def plural(n, word):
    """'1 step', '5 steps', '2 queries': a count and its noun."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def epsilon_text(epsilon, levels=False):
    """An epsilon (or any change of pixels in [0, 1]) as every step prints it: a short
    decimal as itself ("0.2"; levels=True adds its 8-bit levels: "0.2 (51/255)"), anything
    else in 8-bit levels ("8/255", not 0.0313725; "0.5/255")."""
    decimal = f"{epsilon:.4g}"
    if abs(float(decimal) - epsilon) > 1e-9 * max(1, abs(epsilon)):
        return f"{epsilon * 255:.4g}/255"
    return f"{decimal} ({epsilon * 255:.4g}/255)" if levels else decimal


def print_table(header, rows):
    for line in format_table(header, rows):
        print(line)


def csv_writer(header, rows):
    """A write(tmp) function that saves the table as CSV."""

    def write(tmp):
        # surrogateescape: a file name that is not UTF-8 is written back as its own bytes
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as file:
            csv.writer(file).writerows([header, *rows])

    return write


def save_csv(path, header, rows):
    write_atomically(path, csv_writer(header, rows))


def _is_number(cell):
    try:
        float(cell.removesuffix("%"))
    except ValueError:
        return cell == ""
    return True
