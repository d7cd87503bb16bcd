"""A TCP relay on loopback that hands the server's close to the client late: the client has
read the server's last words (PostgreSQL's "terminating connection") but not yet the end
of the stream, as behind a slow network or a proxy."""

from __future__ import annotations

import asyncio
import contextlib


class LateCloseRelay:
    """Relays 127.0.0.1:``port`` to ``upstream_port``; a close from upstream reaches the
    client ``delay`` seconds late. ``upstream_ports`` are the relay's own ports towards the
    server (``client_port`` in ``pg_stat_activity``), to tell its sessions apart."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port, self.delay = upstream_port, delay
        self.upstream_ports: set[int] = set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LateCloseRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        port = up_writer.get_extra_info("sockname")[1]
        self.upstream_ports.add(port)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, late=0.0), self._pump(up_reader, writer, late=self.delay)
            )
        finally:
            self.upstream_ports.discard(port)
            self._tasks.discard(task)
            for end in (writer, up_writer):
                end.close()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, late: float) -> None:
        try:
            while data := await src.read(1 << 16):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        await asyncio.sleep(late)
        with contextlib.suppress(ConnectionError, OSError):
            dst.close()
