"""A relay in front of a gRPC server that loses the answer: it passes a
call through, and as soon as the server starts answering it — the handler
has returned, so whatever it committed is committed — it cuts both
connections. The client never sees the answer and gets UNAVAILABLE, exactly
as when a network drops between a server and its client.

It reads just enough HTTP/2 to tell the answer apart from the connection's
own traffic: frames of the connection (stream 0: SETTINGS, PING, GOAWAY,
WINDOW_UPDATE) and flow-control updates of a stream pass through; the first
HEADERS, DATA or RST_STREAM frame of a stream is the answer and is never
delivered.
"""

from __future__ import annotations

import asyncio
import contextlib

FRAME_HEADER = 9
ANSWER_FRAMES = {0x0, 0x1, 0x3}  # DATA, HEADERS, RST_STREAM


class AnswerCutter:
    def __init__(self, target: str) -> None:
        self.target_host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.cuts = 0  # answers that were cut
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(self.target_host, self.target_port)
        upstream = asyncio.create_task(_pump(client_in, server_out))
        try:
            await self._pass_until_answer(server_in, client_out)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upstream
            # A cut, not a goodbye: no FIN, no GOAWAY reaches the client.
            client_out.transport.abort()
            server_out.transport.abort()

    async def _pass_until_answer(
        self, server_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        while True:
            header = await server_in.readexactly(FRAME_HEADER)
            length = int.from_bytes(header[:3], "big")
            kind = header[3]
            stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            payload = await server_in.readexactly(length)
            if stream and kind in ANSWER_FRAMES:
                self.cuts += 1
                return
            client_out.write(header + payload)
            await client_out.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
