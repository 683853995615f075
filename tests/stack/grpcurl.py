"""grpcurl, the operator's client, run against the stack's front door."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any, Final

from tests.stack.stack_process import BIN

GRPCURL: Final = BIN / "grpcurl"
CALL_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class GrpcurlResult:
    """What one grpcurl run printed."""

    returncode: int
    stdout: str
    stderr: str

    def messages(self) -> list[dict[str, Any]]:
        """The JSON messages on stdout (grpcurl pretty-prints one after another)."""
        decoder = json.JSONDecoder()
        found: list[dict[str, Any]] = []
        text, index = self.stdout, 0
        while True:
            while index < len(text) and text[index].isspace():
                index += 1
            if index == len(text):
                return found
            message, index = decoder.raw_decode(text, index)
            found.append(message)


def grpcurl(
    target: str,
    *args: str,
    token: str | None = None,
    data: dict[str, Any] | None = None,
) -> GrpcurlResult:
    """Run grpcurl against ``target`` (plaintext), as an operator would."""
    command = [str(GRPCURL), "-plaintext", "-max-time", str(CALL_TIMEOUT_S)]
    if token is not None:
        command += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    result = subprocess.run(
        [*command, target, *args],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S + 10,
        check=False,
    )
    return GrpcurlResult(result.returncode, result.stdout, result.stderr)
