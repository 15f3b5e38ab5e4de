"""The docs run as printed: every `$ python step_...` command in the README and in docs/
runs offline, in page order, from the state `make demo` leaves (the coffee photo in
assets/, step 5's files in outputs/), and prints what the page shows.

A line `...` in a page's output stands for lines left out. Lines match exactly, on any
CPU: only a deterministic computation's output is shown so. A block whose figures are one
run's (an attack's path: its step and query counts, the probabilities and distances it
reached) is marked `<!-- doc-test: sample -->` on the line before its fence: its words
(the classes named, the verdicts, the file names) must match exactly and each number only
by its form (another number with as many decimals), since another CPU, thread count or
batch rounds floats differently and an attack turns that into another path.

A block is not run only when the line before its fence says why: `<!-- doc-test: slow -->`
(training, sweeps, audits, benchmarks: sample runs, which their own tests run on tiny
settings) or `<!-- doc-test: needs resnet18 -->` (its weights cannot be had offline):
their arguments are parsed instead. `<!-- doc-test: needs corgi -->` (the tutorial's own
files) is skipped unless ../shared/tutorial/ is beside the project; `<!-- doc-test: needs
corgi, sample -->` is both.
"""

import argparse
import importlib
import re
import shlex
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import ROOT, TUTORIAL, call, succeeded

# In a reader's order: the map, the steps, then the pages about all of them.
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("step_*.md"), key=lambda p: int(p.name.split("_")[1])),
    *sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("step_")),
]
STEPS = [(1, "sample_image"), (2, "pretrained"), (3, "adversarial"), (5, "perturb")]
STEPS += [(6, "defense"), (9, "transfer"), (10, "query")]
MARKER = re.compile(
    r"<!-- doc-test: (slow|needs resnet18|needs corgi|sample|needs corgi, sample) -->"
)
PROGRESS = "Loss: "  # the tutorial's progress line, every 5 steps of an attack
NUMBER = re.compile(r"\d+(?:\.(\d+))?")


class Command(NamedTuple):
    page: str
    line: int
    argv: list
    expected: list  # the output lines the page shows ("..." for lines left out)
    skip: str | None  # why the test does not run it
    sample: bool  # a sample run: numbers are matched by their form only


def commands(page):
    """Every `$ python ...` command of a page's fenced blocks, with the output shown."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, in_block, skip, current = [], False, None, None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if not in_block:
                marker = MARKER.fullmatch(lines[number - 2].strip()) if number > 1 else None
                kind = marker[1] if marker else ""
                skip = kind.removesuffix(", sample").removesuffix("sample") or None
                sample = kind.endswith("sample")
            in_block, current = not in_block, None
        elif in_block and line.startswith("$ python "):
            argv = shlex.split(line.removeprefix("$ python "))
            current = Command(page.name, number, argv, [], skip, sample)
            found.append(current)
        elif in_block and line.startswith("$ "):
            raise AssertionError(f"{page.name}:{number}: only `$ python` commands are tested")
        elif in_block and current is not None:
            current.expected.append(line)
    return found


ALL = [command for page in PAGES for command in commands(page)]


def same_form(expected):
    """A pattern for a sample run's line: its words as printed, any number in place of each
    number (with as many decimals), any run of spaces for a run of spaces (a table's
    columns widen with a longer number)."""
    pattern, start = "", 0
    for number in NUMBER.finditer(expected):
        pattern += re.escape(expected[start : number.start()])
        pattern += r"\d+" + (rf"\.\d{{{len(number[1])}}}" if number[1] else "")
        start = number.end()
    pattern += re.escape(expected[start:])
    return re.compile(re.sub(r"(\\ )+", " +", pattern))


def line_matches(expected, actual, sample):
    return expected == actual or (sample and same_form(expected).fullmatch(actual) is not None)


def progress(lines):
    """How many lines at the start of `lines` are the tutorial's progress lines."""
    return next((i for i, line in enumerate(lines) if not line.startswith(PROGRESS)), len(lines))


def matches(expected, actual, sample=False):
    """Lines equal one by one, where "..." in `expected` stands for any number of lines. In
    a sample run, lines match by form, and the progress lines (`Loss: ... / Class: ...`,
    every 5 steps) are the attack's path itself: as many as it took, with any classes."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:], sample) for i in range(len(actual) + 1))
    if sample and progress(expected):
        shown, printed = progress(expected), progress(actual)
        return printed > 0 and matches(expected[shown:], actual[printed:], sample)
    return (
        bool(actual)
        and line_matches(expected[0], actual[0], sample)
        and matches(expected[1:], actual[1:], sample)
    )


@pytest.fixture(scope="module")
def after_make_demo(tmp_path_factory):
    """A project folder as `make demo` leaves it, where every page's commands then run in
    order (a page's later commands may read what its earlier ones wrote)."""
    folder = tmp_path_factory.mktemp("project")
    if TUTORIAL.exists():
        (folder / "corgi.png").symlink_to(TUTORIAL / "corgi.png")
        (folder / "adversarial_r.npy").symlink_to(TUTORIAL / "adversarial_r.npy")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        succeeded(call(importlib.import_module("step_1_sample_image")))
        succeeded(call(importlib.import_module("step_5_perturb"), "assets/coffee.png"))
    return folder


def test_the_pages_have_commands_and_every_skip_says_why():
    run = {command.page for command in ALL if command.skip is None}
    assert run >= {f"step_{n}_{name}.md" for n, name in STEPS}  # each has a command run
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for marker in re.findall(r"<!-- doc-test:[^>]*-->", text):
            assert MARKER.fullmatch(marker), f"{page.name}: unknown marker {marker}"


def test_every_sample_run_says_so_under_its_block():
    """A reader sees which outputs are one run's: the first line of text after a sample or
    slow block's closing fence starts with "*A sample run"."""
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        fences = [n for n, line in enumerate(lines) if line.startswith("```")]
        for opening, closing in zip(fences[::2], fences[1::2], strict=True):
            marker = MARKER.fullmatch(lines[opening - 1].strip())
            if marker and ("sample" in marker[1] or marker[1] == "slow"):
                after = (line for line in lines[closing + 1 :] if line.strip())
                note = next(after, "")
                assert note.startswith("*A sample run"), f"{page.name}:{closing + 1}: no note"


# Run as printed: all but the slow blocks (sample runs, each tested on a tiny setting in
# its step's tests) and ResNet18's (no weights offline), whose arguments are checked instead.
RUN = [command for command in ALL if command.skip not in ("slow", "needs resnet18")]
NOT_RUN = [command for command in ALL if command not in RUN]


def ids(commands):
    return [f"{command.page}:{command.line}" for command in commands]


class Parsed(Exception):
    """Raised right after a step's parser accepted its arguments: no work is done."""


@pytest.mark.parametrize("command", NOT_RUN, ids=ids(NOT_RUN))
def test_every_command_not_run_still_parses_as_printed(command, monkeypatch):
    """A step's arguments parsed by its own parser (a bad one exits); a benchmark's
    options found in its source (its imports, torchattacks, are not installed here)."""
    script, *args = command.argv
    path = ROOT / script
    assert path.is_file(), f"{command.page}:{command.line}: no {script}"
    if script.startswith("step_"):
        parse = argparse.ArgumentParser.parse_args

        def parse_then_stop(parser, args=None, namespace=None):
            parse(parser, args, namespace)
            raise Parsed

        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        with pytest.raises(Parsed):
            importlib.import_module(path.stem).main(args)
    else:
        source = path.read_text(encoding="utf-8")
        for option in (arg for arg in args if arg.startswith("--")):
            assert f'"{option}"' in source, f"{command.page}:{command.line}: {option}?"


@pytest.mark.parametrize("command", RUN, ids=ids(RUN))
def test_every_command_runs_as_printed(command, after_make_demo, monkeypatch):
    if command.skip == "needs corgi" and not (after_make_demo / "corgi.png").exists():
        pytest.skip(f"the tutorial's files are not beside the project: {TUTORIAL}")
    script, *args = command.argv
    assert Path(ROOT / script).is_file(), f"{command.page}:{command.line}: no {script}"
    monkeypatch.chdir(after_make_demo)
    result = call(importlib.import_module(Path(script).stem), *args)
    assert result.returncode == 0, f"{command.page}:{command.line}: {result.stderr}"
    actual = result.stdout.splitlines()
    assert matches(command.expected, actual, command.sample), (
        f"{command.page}:{command.line}: `python {' '.join(command.argv)}` printed\n"
        + "\n".join(actual)
    )


def test_a_sample_run_matches_its_words_exactly_and_its_numbers_by_form():
    shown = ["Fooled after 6 steps (max change 2/255 per pixel)", "coffee   espresso 0.47  yes"]
    assert matches(shown, ["Fooled after 12 steps (max change 1/255 per pixel)", shown[1]], True)
    assert matches(shown, [shown[0], "coffee   espresso 0.48    yes"], True)
    assert not matches(shown, [shown[0], "coffee   espresso 0.48  yes"])  # exact by default
    assert not matches(shown, [shown[0], "coffee   espresso 0.5  yes"], True)  # other form
    assert not matches(shown, [shown[0], "coffee   consomme 0.47  yes"], True)  # a word
    assert not matches(shown, ["Fooled after 6 steps (max change 2/255 per pixel)"], True)
    assert matches(["a", "...", "b 1.0"], ["a", "x", "y", "b 2.5"], True)
    path = ["Loss: 10.90 / Class: espresso", "Loss: 2.39 / Class: consomme", "Fooled"]
    assert matches(path, ["Loss: 9.1 / Class: espresso", "Fooled"], True)  # the path varies
    assert not matches(path, ["Fooled"], True)  # but there is one
    assert not matches(path, ["Loss: 10.90 / Class: espresso", path[1], "Not fooled"], True)
    assert not matches(path, ["Loss: 10.90 / Class: espresso", "Loss: 2.39 / Class: x", "Fooled"])
