"""marimo's side (``--with-marimo``): its server and kernel, driven as its page does.

marimo is installed on demand into a virtualenv of its own
(``bench/.marimo-venv``, ``python -m venv`` + pip), never into ours. The run
starts ``marimo edit --headless --no-token`` on a temporary folder holding
one notebook file per measure, on a free loopback port, as a child process
that is stopped for sure on the way out.

A ``Session`` is what marimo's own page does, with the least in between:
it reads the page once for the server's skew-protection token, opens the
WebSocket ``/ws?session_id=…&file=…`` (which starts the notebook's kernel
and says ``kernel-ready`` with the file's cell ids), instantiates the
notebook, then runs cells with ``POST /api/kernel/run`` (cell ids and their
code; new code is an edit) over one kept-alive HTTP connection. A run is
timed from sending the POST to the ``completed-run`` notification on the
WebSocket, which marimo sends once the command and every cell it made
run (the descendants of an edited cell too) are done: the moment marimo's
page knows the run is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import websockets

from bench.measures import (
    CHAIN_LENGTH,
    TIMEOUT_S,
    X_CODE,
    BenchError,
    Stopwatch,
    chain_codes,
)
from bench.stack import LOOPBACK, START_TIMEOUT_S, STOP_GRACE_S, free_ports
from services.stack.probes import HttpProbe, wait_until_ready
from services.stack.processes import ChildProcess, Console, ProcessSpec, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from websockets.asyncio.client import ClientConnection

VENV: Final = Path(__file__).resolve().parent / ".marimo-venv"
ROUND_TRIP_FILE: Final = "round_trip.py"
CHAIN_FILE: Final = "chain.py"
_TOKEN: Final = re.compile(r'<marimo-server-token data-token="([^"]+)"')

Message = dict[str, Any]


def marimo_executable() -> Path:
    """``marimo`` in its own virtualenv, installed there first if it is not yet."""
    marimo = VENV / "bin" / "marimo"
    if not marimo.is_file():
        print(f"bench: installing marimo into {VENV}", file=sys.stderr, flush=True)
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run((sys.executable, "-m", "venv", str(VENV)), check=True)
        pip = (
            str(VENV / "bin" / "python"),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        )
        subprocess.run((*pip, "marimo"), check=True)
    return marimo


def marimo_version() -> str:
    done = subprocess.run(
        (str(marimo_executable()), "--version"),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def notebook_file(codes: list[str]) -> str:
    """A marimo notebook file whose cells are ``codes`` (one line each)."""
    cells = "".join(
        f"\n\n@app.cell\ndef _():\n    {code}\n    return\n" for code in codes
    )
    return (
        f"import marimo\n\napp = marimo.App(){cells}\n\n"
        'if __name__ == "__main__":\n    app.run()\n'
    )


@contextlib.asynccontextmanager
async def marimo_server(log: Path) -> AsyncIterator[str]:
    """``marimo edit`` serving the measures' notebooks; its base URL."""
    marimo = marimo_executable()
    with tempfile.TemporaryDirectory(prefix="marimo-bench-") as tmp:
        folder = Path(tmp) / "notebooks"
        folder.mkdir()
        (folder / ROUND_TRIP_FILE).write_text(notebook_file([X_CODE]))
        (folder / CHAIN_FILE).write_text(notebook_file(chain_codes()))
        (port,) = free_ports(1)
        env = dict(os.environ)
        # marimo's config, cache and state stay in the temporary directory.
        for variable in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            env[variable] = str(Path(tmp) / variable.lower())
        argv = (
            str(marimo),
            "-q",
            "edit",
            "--headless",
            "--no-token",
            "--skip-update-check",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            str(folder),
        )
        with log.open("w", encoding="utf-8") as stream:
            child: ChildProcess | None = None
            try:
                spec = ProcessSpec("marimo", argv, env, folder)
                child = await start(spec, Console(stream, colour=False))
                probe = HttpProbe(LOOPBACK, port, "/health")
                if not await wait_until_ready(probe, START_TIMEOUT_S):
                    raise BenchError(f"marimo did not answer {probe.describe()}")
                yield f"http://{LOOPBACK}:{port}"
            finally:
                if child is not None:
                    await child.stop(STOP_GRACE_S)


class Session:
    """One notebook file open in marimo, as its page holds it: WebSocket + HTTP."""

    def __init__(self, base_url: str, file: str) -> None:
        self.base_url = base_url
        self.file = file
        self.id = uuid.uuid4().hex
        self.cell_ids: list[str] = []
        self._socket: ClientConnection | None = None
        self._http: httpx.AsyncClient | None = None

    async def open(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url) as probe:
            page = await probe.get("/", timeout=TIMEOUT_S)
        found = _TOKEN.search(page.text)
        if found is None:
            raise BenchError("marimo's page carries no server token")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Marimo-Session-Id": self.id, "Marimo-Server-Token": found[1]},
            timeout=TIMEOUT_S,
        )
        ws_url = self.base_url.replace("http://", "ws://", 1)
        self._socket = await websockets.connect(
            f"{ws_url}/ws?session_id={self.id}&file={self.file}", max_size=None
        )
        ready = await self._until(lambda m: m["op"] == "kernel-ready")
        self.cell_ids = [str(cell) for cell in ready["data"]["cell_ids"]]
        await self._post(
            "/api/kernel/instantiate", {"objectIds": [], "values": [], "autoRun": True}
        )
        await self._completed()

    async def run(self, cell_ids: list[str], codes: list[str]) -> set[str]:
        """Run (and edit) the cells until ``completed-run``; the cells that ran."""
        await self._post("/api/kernel/run", {"cellIds": cell_ids, "codes": codes})
        return await self._completed()

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._http is not None:
            await self._http.aclose()

    async def _post(self, path: str, body: dict[str, object]) -> None:
        assert self._http is not None
        reply = await self._http.post(path, json=body)
        if reply.status_code != 200:
            raise BenchError(f"marimo {path}: {reply.status_code} {reply.text}")

    async def _completed(self) -> set[str]:
        ran: set[str] = set()

        def done(message: Message) -> bool:
            data = message.get("data", {})
            if message["op"] == "cell-op" and data.get("status") == "running":
                ran.add(str(data["cell_id"]))
            return bool(message["op"] == "completed-run")

        completed = await self._until(done)
        if completed["data"].get("outcome") != "succeeded":
            raise BenchError(f"marimo's run ended {completed['data']}")
        return ran

    async def _until(self, matches: Callable[[Message], bool]) -> Message:
        assert self._socket is not None
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                message: Message = json.loads(await self._socket.recv())
                if matches(message):
                    return message


class _OnSession:
    def __init__(self, base_url: str, file: str) -> None:
        self.session = Session(base_url, file)

    async def prepare(self) -> None:
        await self.session.open()

    async def finish(self) -> None:
        await self.session.close()


class RoundTrip(_OnSession):
    """``x = 1`` run in its cell, POST to ``completed-run``."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, ROUND_TRIP_FILE)

    async def once(self) -> float:
        clock = Stopwatch()
        await self.session.run(self.session.cell_ids[:1], [X_CODE])
        return clock.ms()


class Chain(_OnSession):
    """The first chain cell edited and run (marimo re-runs the nine after it)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, CHAIN_FILE)
        self.count = 0

    async def once(self) -> float:
        self.count += 1
        code = chain_codes(1 + self.count % 2)[0]
        clock = Stopwatch()
        ran = await self.session.run(self.session.cell_ids[:1], [code])
        elapsed = clock.ms()
        if len(ran) != CHAIN_LENGTH:
            raise BenchError(f"marimo's chain ran {len(ran)} of {CHAIN_LENGTH} cells")
        return elapsed
