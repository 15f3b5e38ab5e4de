"""The docs run as printed: every `$ python step_...` command in the README and in docs/
runs offline, in page order, from the state `make demo` leaves (the coffee photo in
assets/, step 5's files in outputs/), and prints what the page shows.

A line `...` in a page's output stands for lines left out. A block is not run only when
the line before its fence says why: `<!-- doc-test: slow -->` (training, sweeps, audits,
benchmarks: sample runs, which their own tests run on tiny settings) or `<!-- doc-test:
needs resnet18 -->` (its weights cannot be had offline): their arguments are parsed
instead. `<!-- doc-test: needs corgi -->` (the tutorial's own files) is skipped unless
../shared/tutorial/ is beside the project.
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
MARKER = re.compile(r"<!-- doc-test: (slow|needs resnet18|needs corgi) -->")


class Command(NamedTuple):
    page: str
    line: int
    argv: list
    expected: list  # the output lines the page shows ("..." for lines left out)
    skip: str | None  # why the test does not run it


def commands(page):
    """Every `$ python ...` command of a page's fenced blocks, with the output shown."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, in_block, skip, current = [], False, None, None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if not in_block:
                marker = MARKER.fullmatch(lines[number - 2].strip()) if number > 1 else None
                skip = marker[1] if marker else None
            in_block, current = not in_block, None
        elif in_block and line.startswith("$ python "):
            argv = shlex.split(line.removeprefix("$ python "))
            current = Command(page.name, number, argv, [], skip)
            found.append(current)
        elif in_block and line.startswith("$ "):
            raise AssertionError(f"{page.name}:{number}: only `$ python` commands are tested")
        elif in_block and current is not None:
            current.expected.append(line)
    return found


ALL = [command for page in PAGES for command in commands(page)]


def matches(expected, actual):
    """Lines equal one by one, where "..." in `expected` stands for any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


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
    assert matches(command.expected, actual), (
        f"{command.page}:{command.line}: `python {' '.join(command.argv)}` printed\n"
        + "\n".join(actual)
    )
