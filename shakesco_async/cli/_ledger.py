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
from .._errors import ConfigurationError, Forbidden, LedgerError, Unauthorized
from .._reconcile import ReconcileSummary
from ..ledger import EntryState, Ledger, LedgerEntry, open_ledger
from ..ledger._sqlite import ANY_BUSINESS
from ._output import ProgressBar, entry_dict, print_json, print_table, utf8_stdout
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
    listing = sub.add_parser("list", parents=[common], help="entries, oldest first (--newest: newest first)")
    listing.add_argument(
        "--state",
        choices=[s.value for s in EntryState],
        action="append",
        help="only entries in this state (repeat for several)",
    )
    listing.add_argument("--customer", help="only entries on this customer ref")
    listing.add_argument("--limit", type=_at_least_one, default=None, help="at most N entries")
    listing.add_argument("--newest", action="store_true", help="newest entries first")
    listing.set_defaults(run=_command(_list))
    show = sub.add_parser("show", parents=[common], help="one entry in full")
    show.add_argument("key", help="the entry's idempotency key")
    show.set_defaults(run=_command(_show))
    stats = sub.add_parser("stats", parents=[common], help="entries per state")
    stats.set_defaults(run=_command(_stats))
    export = sub.add_parser("export", parents=[common], help="every entry as CSV or JSON lines")
    export.add_argument(
        "--format", choices=["csv", "jsonl"], default=None, help="jsonl (the default, also --json) or csv"
    )
    export.set_defaults(run=_command(_export))
    resolve = sub.add_parser(
        "resolve",
        parents=[common],
        help="record what a person found out about a write no read could decide (in doubt or given up)",
    )
    resolve.add_argument("key", help="the entry's idempotency key")
    verdict = resolve.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--applied", action="store_true", help="Shakesco shows it applied: record it committed")
    verdict.add_argument(
        "--not-applied",
        action="store_true",
        help="it was not applied: give it up (the caller's retry with the same key sends it once)",
    )
    resolve.add_argument("--tx-hash", help="with --applied: the transaction's reference, answered on replays")
    resolve.add_argument("--note", required=True, help="why: what was checked, where (kept in the entry)")
    resolve.add_argument("--by", help="who resolved it (default: user@host)")
    resolve.set_defaults(run=_command(_resolve))
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
    reconcile.add_argument(
        "--older-than", type=_not_negative, default=30.0, help="skip entries touched in the last N s (default 30)"
    )
    reconcile.add_argument(
        "--concurrency", type=_at_least_one, default=8, help="reads at once (default 8, at most 1000)"
    )
    reconcile.add_argument(
        "--resend",
        choices=["caller", "all", "none"],
        default="caller",
        help="send again what is proven not applied: writes with your own keys (default), all, or none",
    )
    reconcile.add_argument("--limit", type=_at_least_one, default=None, help="settle at most N entries")
    reconcile.set_defaults(run=_command(_reconcile))


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None


def _at_least_one(text: str) -> int:
    number = int(_number(text, int))
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _at_least_a_day(text: str) -> float:
    days = _number(text, float)
    if not 1 <= days < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1 day: a pruned key is sent again if reused, got {text}")
    return days


def _not_negative(text: str) -> float:
    number = _number(text, float)
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text!r}")
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


def _row(data: dict[str, Any], business: str | None) -> list[object]:
    row: list[object] = [] if business is None else [business]
    return [
        *row,
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
        found = await ledger.entries_by_business(
            states=states, customer=args.customer, limit=args.limit, newest=args.newest
        )
    several = ledger.business == ANY_BUSINESS  # every business's entries: say whose each is
    data = [{**entry_dict(e), "business": b} for b, e in found]
    if args.json:
        print_json(data)
    else:
        headers = ["key", "state", "operation", "customers", "attempts", "updated (UTC)", "reason"]
        print_table(
            ["business", *headers] if several else headers,
            [_row(d, d["business"] if several else None) for d in data],
        )
    return 0


async def _find(ledger: Ledger, key: str) -> tuple[str, LedgerEntry] | None:
    """The entry under ``key``; refused when a view of every business holds it for several."""
    found = await ledger.entries_by_business(key=key)
    if len(found) > 1:
        names = ", ".join(sorted(b for b, _ in found))
        raise ConfigurationError(
            f"key {key!r} is used by {len(found)} businesses ({names}): set SHAKESCO_LEDGER_SCOPE"
            " (or SHAKESCO_API_KEY) to say which"
        )
    return found[0] if found else None


async def _show(args: argparse.Namespace) -> int:
    async with _open(args) as ledger:
        found = await _find(ledger, args.key)
    if found is None:
        print(f"shakesco-async: no entry {args.key!r}", file=sys.stderr)
        return 1
    business, entry = found
    data = {"business": business, **entry_dict(entry)}
    if args.json:
        print_json(data)
    else:
        for name, value in data.items():
            print(f"{name:>14}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return 0


async def _resolve(args: argparse.Namespace) -> int:
    if args.tx_hash is not None and not args.applied:
        raise ConfigurationError("--tx-hash goes with --applied")
    async with _open(args) as view:
        found = await _find(view, args.key)
    if found is None:
        print(f"shakesco-async: no entry {args.key!r}", file=sys.stderr)
        return 1
    ledger = _ledger(args, found[0])  # its own business's ledger: a view of all is read-only
    try:
        entry = await ledger.resolve(args.key, applied=args.applied, tx_hash=args.tx_hash, note=args.note, by=args.by)
    finally:
        await ledger.close()
    if args.json:
        print_json({"business": found[0], **entry_dict(entry)})
    else:
        print(f"{entry.key}: {entry.state.value} ({entry.reason})")
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
    if args.json and args.format == "csv":
        raise ConfigurationError("--json is JSON lines: it cannot go with --format csv")
    async with _open(args) as ledger:
        found = await ledger.entries_by_business()
    rows = [{"business": b, **entry_dict(e)} for b, e in found]
    if (args.format or "jsonl") == "jsonl":
        for row in rows:
            print(json.dumps(row, sort_keys=True, default=str))
        return 0
    fields = [
        "business",
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
    with utf8_stdout() as out:
        writer = csv.DictWriter(out, fieldnames=fields)
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
            await _prove_the_key(client)
            open_before = await _open_count(ledger)
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
            elsewhere = await _other_scopes(args, ledger) if open_before == 0 else 0
    finally:
        await ledger.close()
    skipped = max(0, open_before - summary.examined)
    if args.json:
        print_json(
            {
                "examined": summary.examined,
                "skipped": skipped,
                "dry_run": summary.dry_run,
                "counts": summary.counts,
                "in_doubt": [{"key": k, "reason": r} for k, r in summary.in_doubt],
                "scope": ledger.business,
                "entries_of_other_scopes": elsewhere,
            }
        )
    else:
        _print_summary(summary, skipped, args.older_than)
    if elsewhere:
        print(
            f"shakesco-async: note: this key's ledger scope ({ledger.business}) holds no entries, but the"
            f" ledger holds {elsewhere} of other scopes: another API key's, or SHAKESCO_LEDGER_SCOPE unset"
            " after a key rotation?",
            file=sys.stderr,
        )
    return EXIT_IN_DOUBT if summary.in_doubt else 0


async def _prove_the_key(client: ShakescoClient) -> None:
    """One cheap read before any pass: a wrong key is one clear error, not one per entry
    (and not "nothing to do" from a scope the wrong key names)."""
    try:
        await client.event_counter()
    except (Unauthorized, Forbidden) as exc:
        raise ConfigurationError(f"the API refused SHAKESCO_API_KEY ({exc}); nothing was reconciled") from None


async def _open_count(ledger: Ledger) -> int:
    counts = await ledger.counts()
    return sum(counts[s] for s in (EntryState.RECORDED, EntryState.SENDING, EntryState.IN_DOUBT))


async def _other_scopes(args: argparse.Namespace, ours: Ledger) -> int:
    """How many entries the ledger holds under scopes other than ``ours`` (which holds none)."""
    view = _ledger(args, ANY_BUSINESS)
    try:
        return sum((await view.counts()).values()) - sum((await ours.counts()).values())
    except LedgerError:
        return 0
    finally:
        await view.close()


# What each outcome means, said for a person; in a dry run, what would happen.
_OUTCOMES = {
    "committed": ("verified applied, recorded", "verified applied"),
    "resent": ("proven not applied, sent again and applied", "proven not applied, would be sent again"),
    "failed": ("sent again, refused by the API", "sent again, refused by the API"),
    "not_applied": ("proven not applied, left for its caller", "proven not applied, would be left for its caller"),
    "abandoned": ("proven not applied, given up (SDK-made key)", "proven not applied, would be given up"),
    "in_doubt": ("left in doubt (see below)", "would be left in doubt (see below)"),
    "busy": ("skipped: another process is writing its customers", "skipped: another process is writing them"),
    "final": ("already settled by another writer", "already settled by another writer"),
}


def _print_summary(summary: ReconcileSummary, skipped: int, older_than: float) -> None:
    n = summary.examined
    settled = n - summary.counts["in_doubt"] - summary.counts["busy"]
    head = "dry run: " if summary.dry_run else ""
    verb = "would settle" if summary.dry_run else "settled"
    doubt = summary.counts["in_doubt"]
    print(f"{head}examined {n} open {'entry' if n == 1 else 'entries'}: {verb} {settled}, in doubt {doubt}")
    rows = [(_OUTCOMES[k][summary.dry_run], v) for k, v in summary.counts.items() if v]
    if rows:
        print_table(["outcome", "entries"], rows)
    if skipped:
        print(
            f"skipped {skipped} open {'entry' if skipped == 1 else 'entries'} touched in the last"
            f" {older_than:g}s (a live write may be working on them; --older-than 0 takes them too)"
        )
    for key, reason in summary.in_doubt:
        print(f"still in doubt: {key}: {reason}")
