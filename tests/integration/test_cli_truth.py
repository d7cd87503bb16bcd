"""The command line as an operator uses it, run as a subprocess: it says what it did, what
it skipped and why, refuses a wrong key once and clearly, and ends quietly in a pipe."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest

import shakesco_async as sa
from shakesco_async.cli import _main
from shakesco_async.ledger import Intent, KeySource, SQLiteLedger
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import die_at
from tests.support.cli import ROOT, run_cli, start_cli


async def _many_entries(path: Path, business: str, n: int) -> None:
    async with SQLiteLedger(path, business=business) as ledger:
        await asyncio.gather(
            *(
                ledger.begin(
                    Intent(f"k{i:05d}", "/upgrade-to-shakesco", {}, (f"c{i}",), KeySource.CALLER),
                    owner="o",
                    lease_ttl=1,
                )
                for i in range(n)
            )
        )


async def _piped(command: str, env: dict[str, str]) -> tuple[str, str, str]:
    """(what head printed, the command's exit status, its stderr) of ``COMMAND | head -2``."""
    script = f'{sys.executable} -m shakesco_async {command} 2>err.txt | head -2; echo "status=${{PIPESTATUS[0]}}"'
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=env["TMP"], env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    lines = out.decode().splitlines()
    return "\n".join(lines[:-1]), lines[-1], (Path(env["TMP"]) / "err.txt").read_text()


@pytest.mark.slow  # thousands of entries, three processes
@pytest.mark.parametrize("command", ["ledger list", "ledger export", "ledger export --format csv"])
async def test_a_closed_pipe_ends_quietly(tmp_path: Path, command: str) -> None:
    path = tmp_path / "ledger.sqlite3"
    await _many_entries(path, "b", 3000)  # far more than a pipe holds
    env = {"TMP": str(tmp_path), "SHAKESCO_LEDGER": str(path), "PYTHONPATH": str(ROOT)}
    shown, status, err = await _piped(command, env)
    assert len(shown.splitlines()) == 2
    assert status == "status=0" and err == "", err


async def test_version_and_bad_numbers(tmp_path: Path) -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0 and out.strip() == f"shakesco-async {sa.__version__}"
    path = tmp_path / "ledger.sqlite3"
    await _many_entries(path, "b", 1)
    code, _, err = await run_cli("ledger", "list", "--limit", "abc", "--ledger", str(path))
    assert code == 2 and "--limit: not a whole number: 'abc'" in err
    code, _, err = await run_cli("reconcile", "--older-than", "soon", "--ledger", str(path))
    assert code == 2 and "--older-than: not a number: 'soon'" in err


def test_every_option_has_help() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    missing += walk(sub, f"{path} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(_main._parser(), "shakesco-async") == []


async def test_the_sandbox_on_a_busy_or_bad_port_is_one_clear_line(sandbox: Sandbox) -> None:
    busy = sandbox.base_url.rsplit(":", 1)[1]
    code, _, err = await run_cli("sandbox", "--port", busy)
    assert code != 0 and "cannot listen on 127.0.0.1:" in err and "Traceback" not in err
    code, _, err = await run_cli("sandbox", "--port", "70000")
    assert code == 2 and "a port is 0 to 65535" in err and "Traceback" not in err


async def test_list_newest_first_and_whose_entries(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    await _many_entries(path, "acme", 3)
    async with SQLiteLedger(path, business="other") as ledger:
        await ledger.begin(Intent("k00001", "/redeem-tokens", {}, ("x",), KeySource.CALLER), owner="o", lease_ttl=1)
    code, out, _ = await run_cli("ledger", "list", "--newest", "--limit", "2", "--ledger", str(path))
    rows = out.splitlines()[2:]
    assert code == 0 and out.splitlines()[0].split()[0] == "business"
    assert [r.split()[:2] for r in rows] == [["other", "k00001"], ["acme", "k00002"]]
    code, _, err = await run_cli("ledger", "show", "k00001", "--ledger", str(path))
    assert code == 2 and "used by 2 businesses (acme, other)" in err
    code, out, _ = await run_cli(
        "ledger", "show", "k00001", "--json", "--ledger", str(path), env={"SHAKESCO_LEDGER_SCOPE": "acme"}
    )
    assert code == 0 and json.loads(out)["business"] == "acme"
    code, out, _ = await run_cli("ledger", "export", "--json", "--ledger", str(path))
    assert code == 0 and {json.loads(line)["business"] for line in out.splitlines()} == {"acme", "other"}
    code, _, err = await run_cli("ledger", "export", "--json", "--format", "csv", "--ledger", str(path))
    assert code == 2 and "--json is JSON lines" in err


async def _crashed(make_client: ClientFactory, tmp_path: Path) -> str:
    """A ledger file a crash left one open entry in; its path."""
    client = make_client()
    await die_at(client, "sending_applied", "crash-1", "ann", KeySource.CALLER)
    await client.aclose()
    return str(tmp_path / "ledger.sqlite3")


async def test_reconcile_with_a_wrong_key_is_one_clear_error(
    make_client: ClientFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    ledger = await _crashed(make_client, tmp_path)
    env = {"SHAKESCO_API_KEY": "sk_wrong", "SHAKESCO_BASE_URL": sandbox.base_url}
    code, out, err = await run_cli("reconcile", "--older-than", "0", "--ledger", ledger, env=env)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "shakesco-async: the API refused SHAKESCO_API_KEY (401 Unauthorized); nothing was reconciled"
    ]
    assert "sk_wrong" not in err


async def test_a_scope_holding_nothing_says_where_the_entries_are(
    make_client: ClientFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    ledger = await _crashed(make_client, tmp_path)
    env = {
        "SHAKESCO_API_KEY": sandbox.api_key,
        "SHAKESCO_BASE_URL": sandbox.base_url,
        "SHAKESCO_LEDGER_SCOPE": "elsewhere",
    }
    code, out, err = await run_cli("reconcile", "--older-than", "0", "--ledger", ledger, env=env)
    assert code == 0 and "examined 0 open entries" in out
    assert "scope (elsewhere) holds no entries, but the ledger holds 1 of other scopes" in err


async def test_summaries_count_skipped_settled_resent_and_in_doubt_apart(
    make_client: ClientFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    client = make_client()
    for n in range(3):
        await die_at(client, "sending_applied", f"applied-{n}", f"a{n}", KeySource.CALLER)
    await die_at(client, "recorded", "never-sent", "b0", KeySource.CALLER)
    await client.aclose()
    env = {"SHAKESCO_API_KEY": sandbox.api_key, "SHAKESCO_BASE_URL": sandbox.base_url}
    ledger = str(tmp_path / "ledger.sqlite3")
    # The crashed sends were a minute ago; the recorded one is younger than --older-than.
    code, out, _ = await run_cli("reconcile", "--dry-run", "--ledger", ledger, env=env)
    assert code == 0
    assert "dry run: examined 3 open entries: would settle 3, in doubt 0" in out
    assert "skipped 1 open entry touched in the last 30s" in out
    code, out, _ = await run_cli("reconcile", "--dry-run", "--older-than", "0", "--ledger", ledger, env=env)
    assert "dry run: examined 4 open entries: would settle 4, in doubt 0" in out
    assert "proven not applied, would be sent again  1" in out and "verified applied" in out
    code, out, _ = await run_cli("reconcile", "--older-than", "0", "--ledger", ledger, env=env)
    assert "examined 4 open entries: settled 4, in doubt 0" in out
    assert "proven not applied, sent again and applied  1" in out
    assert "verified applied, recorded                  3" in out


async def test_a_terminal_that_cannot_show_a_name_gets_escapes_and_an_export_stays_exact(tmp_path: Path) -> None:
    """Keys and customers are the application's text: a terminal whose encoding lacks a
    character (PYTHONIOENCODING, a Latin-1 locale) sees it escaped, never a traceback; an
    export is data and stays UTF-8 whatever the terminal."""
    path = tmp_path / "ledger.sqlite3"
    async with SQLiteLedger(path, business="acme") as ledger:
        intent = Intent("k€y-1", "/redeem-tokens", {"customer_ref": "zoë-用户"}, ("zoë-用户",), KeySource.CALLER)
        await ledger.begin(intent, owner="o", lease_ttl=1)
    ascii_terminal = {"PYTHONIOENCODING": "ascii"}
    for args in (["ledger", "list"], ["ledger", "show", "k€y-1"], ["ledger", "stats"]):
        code, out, err = await run_cli(*args, "--ledger", str(path), env=ascii_terminal)
        assert code == 0 and err == "", (args, err)
        assert "Traceback" not in out
    _, listed, _ = await run_cli("ledger", "list", "--ledger", str(path), env=ascii_terminal)
    assert "k\\u20acy-1" in listed and "zo\\xeb-\\u7528\\u6237" in listed
    proc = await start_cli("ledger", "export", "--format", "csv", "--ledger", str(path), env=ascii_terminal)
    raw, err_bytes = await proc.communicate()
    assert proc.returncode == 0, err_bytes.decode()
    (row,) = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    assert row["key"] == "k€y-1" and json.loads(row["customers"]) == ["zoë-用户"]
    # Bytes that are no text in the terminal's encoding (Python keeps them as lone surrogates)
    for args in (["ledger", "show", "\udcff"], ["ledger", "list", "--customer", "c\udcff"]):
        code, out, err = await run_cli(*args, "--ledger", str(path))
        assert code == 2 and "is not valid Unicode text" in err and "Traceback" not in err, err
