"""Shared pieces of the benchmarks: timing, percentiles, an in-process sandbox."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import attrs

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.sandbox import Sandbox

__all__ = ["Run", "bench_client", "measure", "parser", "percentile", "verdict"]


@attrs.frozen
class Run:
    """One measured batch: operations per second, per-operation latencies (s), and the
    process's CPU time per operation (s; every thread, the in-process sandbox included)."""

    rate: float
    latencies: tuple[float, ...]
    cpu: float = 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


def bench_client(sandbox: Sandbox, ledger: str | os.PathLike[str], synchronous: str = "FULL") -> ShakescoClient:
    """A client of the in-process sandbox; no pause before verifying (nothing is in flight)."""
    settings = GuardSettings(synchronous=synchronous, verify_delay=0.0)  # type: ignore[arg-type]
    return ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, guard=settings)


def percentile(values: tuple[float, ...], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def measure(operation: Callable[[int], Awaitable[object]], count: int, concurrency: int) -> Run:
    """Run ``operation(i)`` for i in range(count), ``concurrency`` at a time."""
    latencies: list[float] = []
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            await operation(i)
            latencies.append(time.perf_counter() - started)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Run(count / (time.perf_counter() - started), tuple(latencies), (time.process_time() - cpu) / count)


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    """Median of per-round ratios: each round measured the two side by side."""
    return statistics.median(a / b for a, b in pairs)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a short run that checks the script works, not the targets")
    return p


def verdict(checks: list[tuple[str, float, float]], smoke: bool) -> int:
    """Print each ratio against its target; non-zero exit if one is missed (never in smoke mode)."""
    missed = [name for name, value, target in checks if value < target]
    line = "; ".join(f"{name} = {value:.2f} (target >= {target:.2f})" for name, value, target in checks)
    print(f"RESULT {line}")
    if smoke:
        print("smoke run: targets not enforced")
        return 0
    if missed:
        print(f"MISSED: {', '.join(missed)}")
        return 1
    return 0
