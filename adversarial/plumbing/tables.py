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
