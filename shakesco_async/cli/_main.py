"""Argument parsing and dispatch for the ``shakesco-async`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .._errors import ShakescoError
from .._version import VERSION
from ._ledger import add_ledger_parsers
from ._output import escape_what_the_terminal_cannot_show
from ._run import Terminated, run
from ._sandbox import add_sandbox_parser

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shakesco-async", description="Shakesco Tokens API SDK tools")
    parser.add_argument("--version", action="version", version=f"shakesco-async {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo against an in-process sandbox (no API key needed)")
    demo.set_defaults(run=_demo)
    add_sandbox_parser(commands)
    add_ledger_parsers(commands)
    return parser


def _demo(_: argparse.Namespace) -> int:
    from .._demo import run_demo

    return run(run_demo())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    escape_what_the_terminal_cannot_show()
    try:
        status: int = args.run(args)
        sys.stdout.flush()  # here, where a closed pipe can still be answered quietly
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted, it has. Python would otherwise
        # complain again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (KeyboardInterrupt, Terminated) as stop:
        print("shakesco-async: stopped; what was settled stays settled", file=sys.stderr)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    except ShakescoError as exc:
        print(f"shakesco-async: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
