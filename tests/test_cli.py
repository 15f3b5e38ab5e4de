"""One meaning per option and one way to write a number: every option's help shows its
default, every amount accepts 8/255, 0.5 and 1/2, an epsilon prints one way, counts agree."""

import argparse
import importlib

import pytest
from conftest import ROOT, assert_clean_error, call

from adversarial.plumbing import cli
from adversarial.plumbing.tables import epsilon_text, plural

STEPS = sorted(path.stem for path in ROOT.glob("step_*.py"))


class Parser(Exception):
    """Raised with the step's parser when it is asked to parse: no work is done."""


def parser_of(step, monkeypatch):
    def stop(parser, args=None, namespace=None):
        raise Parser(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(Parser) as caught:
        importlib.import_module(step).main([])
    return caught.value.args[0]


def parsed(step, monkeypatch, *args):
    """The step's arguments as its own parser reads them."""
    parser = parser_of(step, monkeypatch)
    monkeypatch.undo()
    return parser.parse_args([str(arg) for arg in args])


@pytest.mark.parametrize("step", STEPS)
def test_every_option_has_a_help_line_that_shows_its_default(step, monkeypatch):
    for action in parser_of(step, monkeypatch)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{step} {name}: no help"
        if action.default not in (None, False, (), argparse.SUPPRESS):
            assert "default" in action.help, f"{step} {name}: {action.help!r}"


def test_the_shown_default_is_written_as_a_learner_types_it():
    parser = cli.ArgumentParser()
    parser.add_argument("--epsilon", type=cli.pixel_amount, default=2 / 255, help="the bound")
    parser.add_argument("--qualities", default=(50, 75), help="JPEG")
    parser.add_argument("--steps", default=30, help="how many (default 30)")
    helps = [action.help for action in parser._actions[1:]]
    assert helps == ["the bound (default 2/255)", "JPEG (default 50,75)", "how many (default 30)"]


@pytest.mark.parametrize("parse", [cli.amount, cli.positive_float, cli.pixel_amount, cli.share])
def test_every_amount_is_written_the_same_ways(parse):
    assert parse("8/255") == pytest.approx(8 / 255)
    assert parse("0.5") == parse("1/2") == 0.5
    for bad in ["x", "1/0", "1/2/3", "nan", "inf"]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_sigmas_radii_and_the_step_size_take_fractions(monkeypatch):
    args = parsed("step_12_smoothing", monkeypatch, "--sigmas", "1/4,1/2", "--radii", "1/2")
    assert (args.sigmas, args.radii) == ((0.25, 0.5), (0.5,))
    args = parsed("step_5_perturb", monkeypatch, "x.png", "--lr", "1/255")
    assert args.lr == pytest.approx(1 / 255)


def test_an_epsilon_prints_one_way():
    assert [epsilon_text(e) for e in (8 / 255, 2 / 255, 0.2, 0.05, 0.5 / 255)] == [
        "8/255",
        "2/255",
        "0.2",
        "0.05",
        "0.5/255",
    ]
    assert epsilon_text(0.2, levels=True) == "0.2 (51/255)"
    assert epsilon_text(4 / 255, levels=True) == "4/255"


def test_counts_agree_with_their_nouns():
    assert [plural(1, "step"), plural(5, "step"), plural(1, "query"), plural(3, "query")] == [
        "1 step",
        "5 steps",
        "1 query",
        "3 queries",
    ]


def test_a_bad_option_is_one_error_line_in_the_same_form_as_the_others():
    import step_10_query

    assert_clean_error(call(step_10_query, "--epsilon", "x"), "error: argument --epsilon:", "8/255")
