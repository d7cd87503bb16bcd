"""The command line's progress bar: redrawn in place, ended by its caller."""

from __future__ import annotations

import io

import pytest

from shakesco_async.cli._output import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_ends_its_line_only_when_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    bar = ProgressBar()
    bar(20, 20)  # caught up with what is claimed so far; more pages may come
    bar(30, 60)
    assert "\n" not in screen.getvalue()
    assert screen.getvalue().endswith("] 30/60")
    bar.close()
    assert screen.getvalue().endswith("\n")
    bar.close()  # once
    assert screen.getvalue().count("\n") == 1


def test_no_bar_without_a_person_watching(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr("sys.stderr", screen)
    bar = ProgressBar()
    bar(5, 100)
    bar.close()
    assert screen.getvalue() == ""
