"""``shakesco-async ledger ...`` and ``shakesco-async reconcile``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from .._client import ShakescoClient
from .._config import DEFAULT_LEDGER, ApiKey, resolve_api_key, resolve_ledger_scope
from .._errors import ConfigurationError
from ..ledger import EntryState, Ledger, open_ledger
from ..ledger._sqlite import ANY_BUSINESS
from ._output import ProgressBar, entry_dict, print_json, print_table
from ._run import run as run_command

__all__ = ["add_ledger_parsers"]

EXIT_IN_DOUBT = 3


def add_ledger_parsers(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ledger",
        default=os.environ.get("SHAKESCO_LEDGER", DEFAULT_LEDGER),
        help="ledger file or postgresql:// DSN (env SHAKESCO_LEDGER)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "--allow-shared-filesystem",
        action="store_true",
        help="open a SQLite ledger on a network filesystem (NFS, SMB...) that only this host uses",
    )

    ledger = commands.add_parser("ledger", help="inspect the ledger of guarded writes")
    sub = ledger.add_subparsers(dest="ledger_command", required=True)
    listing = sub.add_parser("list", parents=[common], help="entries, oldest first")
    listing.add_argument("--state", choices=[s.value for s in EntryState], action="append")
    listing.add_argument("--customer")
    listing.add_argument("--limit", type=_at_least_one, default=None)
    listing.set_defaults(run=_command(_list))
    show = sub.add_parser("show", parents=[common], help="one entry in full")
    show.add_argument("key")
    show.set_defaults(run=_command(_show))
    stats = sub.add_parser("stats", parents=[common], help="entries per state")
    stats.set_defaults(run=_command(_stats))
    export = sub.add_parser("export", parents=[common], help="every entry as CSV or JSON lines")
    export.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    export.set_defaults(run=_command(_export))
    prune = sub.add_parser(
        "prune",
        parents=[common],
        help="delete final entries older than N days (their idempotency keys are forgotten)",
    )
    prune.add_argument(
        "--older-than-days",
        type=_at_least_a_day,
        required=True,
        help="at least 1; longer than any job could be redelivered with the same key",
    )
    prune.set_defaults(run=_command(_prune))
    move = sub.add_parser("move-to-postgres", parents=[common], help="copy open and recent entries into PostgreSQL")
    move.add_argument("dsn", help="postgresql:// DSN of the shared ledger")
    move.add_argument("--recent-days", type=_not_negative, default=30.0, help="also copy final entries this recent")
    move.set_defaults(run=_command(_move))

    reconcile = commands.add_parser(
        "reconcile", parents=[common], help="settle open entries (needs SHAKESCO_API_KEY and the API)"
    )
    reconcile.add_argument("--dry-run", action="store_true", help="verify and report, change nothing")
    reconcile.add_argument("--older-than", type=float, default=30.0, help="skip entries touched in the last N s")
    reconcile.add_argument("--concurrency", type=int, default=8, help="reads at once (default 8, at most 1000)")
    reconcile.add_argument(
        "--resend",
        choices=["caller", "all", "none"],
        default="caller",
        help="send again what is proven not applied: writes with your own keys (default), all, or none",
    )
    reconcile.add_argument("--limit", type=_at_least_one, default=None, help="settle at most N entries")
    reconcile.set_defaults(run=_command(_reconcile))


def _at_least_one(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _at_least_a_day(text: str) -> float:
    days = float(text)
    if not 1 <= days < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1 day: a pruned key is sent again if reused, got {text}")
    return days


def _not_negative(text: str) -> float:
    number = float(text)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return number


def _command(handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Callable[[argparse.Namespace], int]:
    """Run an async command on an existing ledger file (never create one by looking at it)."""

    def run(args: argparse.Namespace) -> int:
        if not _is_dsn(args.ledger) and not os.path.exists(args.ledger):
            raise SystemExit(f"shakesco-async: no ledger at {args.ledger!r}")
        return run_command(handler(args))

    return run


def _is_dsn(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


@asynccontextmanager
async def _open(args: argparse.Namespace) -> AsyncIterator[Ledger]:
    """The ledger, scoped as a client would be (SHAKESCO_LEDGER_SCOPE, else SHAKESCO_API_KEY's
    business) when either is set, else every business (read-only)."""
    try:
        key: ApiKey | None = resolve_api_key(None)
    except ConfigurationError:
        key = None
    ledger = _ledger(args, resolve_ledger_scope(None, key) or ANY_BUSINESS)
    try:
        yield ledger
    finally:
        await ledger.close()


def _ledger(args: argparse.Namespace, business: str) -> Ledger:
    return open_ledger(args.ledger, business=business, allow_shared_filesystem=args.allow_shared_filesystem)


def _row(data: dict[str, Any]) -> list[object]:
    return [
        data["key"],
        data["state"],
        data["operation"],
        ",".join(data["customers"]),
        data["attempts"],
        data["updated_at"][:19],
        data["reason"] or "",
    ]


async def _list(args: argparse.Namespace) -> int:
    async with _open(args) as ledger:
        states = [EntryState(s) for s in args.state] if args.state else None
        entries = await ledger.entries(states=states, customer=args.customer, limit=args.limit)
    data = [entry_dict(e) for e in entries]
    if args.json:
        print_json(data)
    else:
        print_table(
            ["key", "state", "operation", "customers", "attempts", "updated (UTC)", "reason"], [_row(d) for d in data]
        )
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with _open(args) as ledger:
        entry = await ledger.get(args.key)
    if entry is None:
        print(f"shakesco-async: no entry {args.key!r}", file=sys.stderr)
        return 1
    data = entry_dict(entry)
    if args.json:
        print_json(data)
    else:
        for name, value in data.items():
            print(f"{name:>14}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return 0


async def _stats(args: argparse.Namespace) -> int:
    async with _open(args) as ledger:
        counts = await ledger.counts()
    data = {state.value: n for state, n in counts.items()}
    if args.json:
        print_json(data)
    else:
        print_table(["state", "entries"], list(data.items()))
    return 0


async def _prune(args: argparse.Namespace) -> int:
    async with _open(args) as ledger:
        if ledger.business == ANY_BUSINESS:
            raise ConfigurationError(
                "prune needs SHAKESCO_LEDGER_SCOPE or SHAKESCO_API_KEY: it deletes one business's entries"
            )
        pruned = await ledger.prune(older_than=args.older_than_days * 86400)
    if args.json:
        print_json({"pruned": pruned})
    else:
        print(f"pruned {pruned} final entries older than {args.older_than_days:g} days")
    return 0


async def _export(args: argparse.Namespace) -> int:
    async with _open(args) as ledger:
        entries = await ledger.entries()
    rows = [entry_dict(e) for e in entries]
    if args.format == "jsonl":
        for row in rows:
            print(json.dumps(row, sort_keys=True, default=str))
        return 0
    fields = [
        "key",
        "state",
        "operation",
        "customers",
        "key_source",
        "attempts",
        "created_at",
        "updated_at",
        "in_flight",
        "params",
        "snapshot",
        "result",
        "error",
        "reason",
        "params_digest",
    ]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return 0


async def _move(args: argparse.Namespace) -> int:
    from ..ledger._move import move_sqlite_to_postgres

    if _is_dsn(args.ledger):
        raise SystemExit("shakesco-async: --ledger must be the SQLite file to move from")
    read, inserted = await move_sqlite_to_postgres(args.ledger, args.dsn, recent_days=args.recent_days)
    if args.json:
        print_json({"read": read, "inserted": inserted})
    else:
        print(f"copied {inserted} of {read} open or recent entries into PostgreSQL")
    return 0


async def _reconcile(args: argparse.Namespace) -> int:
    bar = ProgressBar()
    # Scoped as the client would scope it; opened here for --allow-shared-filesystem.
    ledger = _ledger(args, resolve_ledger_scope(None, resolve_api_key(None)))
    try:
        async with ShakescoClient(ledger=ledger) as client:
            try:
                summary = await client.reconcile(
                    older_than=args.older_than,
                    concurrency=args.concurrency,
                    resend=args.resend,
                    dry_run=args.dry_run,
                    limit=args.limit,
                    progress=None if args.json else bar,
                )
            finally:
                bar.close()
    finally:
        await ledger.close()
    if args.json:
        print_json(
            {
                "examined": summary.examined,
                "dry_run": summary.dry_run,
                "counts": summary.counts,
                "in_doubt": [{"key": k, "reason": r} for k, r in summary.in_doubt],
            }
        )
    else:
        prefix = "would settle" if summary.dry_run else "settled"
        print(f"{prefix} {summary.examined} open entries")
        print_table(["outcome", "entries"], [(k, v) for k, v in summary.counts.items() if v])
        for key, reason in summary.in_doubt:
            print(f"still in doubt: {key}: {reason}")
    return EXIT_IN_DOUBT if summary.in_doubt else 0
