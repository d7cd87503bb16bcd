"""``shakesco-async sandbox``: serve the sandbox, with faults given on the command line."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..sandbox import DEMO_API_KEY, FaultMode, Sandbox
from ._run import run

__all__ = ["add_sandbox_parser", "parse_fault", "serve"]

_FAULT_HELP = (
    "inject a fault: MODE[,endpoint=/path][,on=write|read|any][,count=N][,probability=P][,delay=S]"
    "[,status=N][,message=TEXT][,after=N]; MODE is one of " + ", ".join(m.value for m in FaultMode)
)
_NUMBERS = {"count": int, "after": int, "status": int, "probability": float, "delay": float, "retry_after": float}


def parse_fault(spec: str) -> dict[str, Any]:
    """``drop_after_commit,endpoint=/claim-tokens,count=3`` -> keyword arguments of ``Faults.add``."""
    mode, *options = spec.split(",")
    try:
        parsed: dict[str, Any] = {"mode": FaultMode(mode.strip())}
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown fault mode {mode!r}") from None
    for option in options:
        name, sep, value = option.partition("=")
        name = name.strip()
        if not sep or name not in {*_NUMBERS, "endpoint", "on", "message"}:
            raise argparse.ArgumentTypeError(f"bad fault option {option!r}")
        try:
            parsed[name] = _NUMBERS[name](value) if name in _NUMBERS else value
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad value in {option!r}") from None
    return parsed


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def add_sandbox_parser(commands: Any) -> None:
    parser = commands.add_parser("sandbox", help="serve the sandbox Tokens API on loopback")
    add_sandbox_arguments(parser)
    parser.set_defaults(run=lambda args: run(serve(args)))


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8787, help="port (default 8787; 0 picks a free one)")
    parser.add_argument("--api-key", action="append", dest="api_keys", help=f"accepted key (default {DEMO_API_KEY})")
    parser.add_argument("--seed", type=int, default=None, help="seed for probabilistic faults")
    parser.add_argument("--fault", action="append", type=parse_fault, default=[], help=_FAULT_HELP)


async def serve(args: argparse.Namespace) -> int:
    sandbox = Sandbox(api_keys=tuple(args.api_keys or (DEMO_API_KEY,)), seed=args.seed)
    for fault in args.fault:
        try:
            sandbox.faults.add(**fault)
        except ValueError as exc:
            raise SystemExit(f"shakesco-async sandbox: --fault: {exc}") from None
    try:
        base_url = await sandbox.start(args.host, args.port)
    except OSError as exc:  # the port is taken, the address is not this machine's...
        await sandbox.stop()
        raise SystemExit(
            f"shakesco-async sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    print(f"Shakesco sandbox serving on {base_url}", flush=True)
    print(f"  SHAKESCO_BASE_URL={base_url}", flush=True)
    for key in sandbox.businesses:
        print(f"  SHAKESCO_API_KEY={key}", flush=True)
    for rule in sandbox.faults.rules:
        print(f"  fault: {rule.mode.value} endpoint={rule.endpoint or '*'} on={rule.on} count={rule.count}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()
    return 0
