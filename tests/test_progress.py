"""Progress on stderr: drawn on a terminal, saying what is under way; nothing otherwise."""

import io
import sys

from adversarial.plumbing.progress import each, note, progress, runs_of


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress(range(3), "counting")) == [0, 1, 2]
    for _name, _item in each({"FGSM": 1, "PGD": 2}, "audit"):
        note("target 1 of 9")
    assert sys.stderr.getvalue() == ""


def test_a_terminal_sees_what_is_under_way(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    seen = []
    on_step = runs_of(9, "target")
    for name, steps in each({"APGD-CE": [], "APGD-T (DLR)": [0, 1, 0, 1, 2, 0]}, "audit"):
        for step in steps:  # the step count starts again with each target: 3 targets
            on_step(step, None, None)
        seen.append(name)
    drawn = sys.stderr.getvalue()
    assert seen == ["APGD-CE", "APGD-T (DLR)"]
    assert "audit: APGD-CE" in drawn
    assert "audit: APGD-T (DLR)" in drawn and "target 3 of 9" in drawn
    assert "target 4 of 9" not in drawn
