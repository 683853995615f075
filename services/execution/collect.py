"""Turning one cell's kernel events into live events and a bounded result.

The kernel caps a cell's printed output itself, but a kernel runs untrusted
code, so the service enforces its own caps on what it keeps for the stored
result: text up to the output limit, rich outputs up to a total size. Live
events are forwarded as they arrive; only the stored copy is capped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2

if TYPE_CHECKING:
    from reflow.notebook.v1 import notebook_pb2

# Rich outputs kept per cell for the stored result (a DataFrame preview and a
# few plots fit easily); what is beyond it is replaced by a notice.
MAX_OUTPUT_BYTES_PER_CELL = 12 * 1024 * 1024


@dataclass
class CellCollector:
    """Accumulates what a cell printed and displayed, within limits."""

    text_limit_bytes: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    outputs: list[notebook_pb2.Output] = field(default_factory=list)
    truncated: bool = False
    _text_bytes: int = 0
    _output_bytes: int = 0

    def add_chunk(self, chunk: execution_pb2.StreamChunk) -> None:
        """Keep printed text, up to the limit."""
        if chunk.truncated:
            self.truncated = True
        room = self.text_limit_bytes - self._text_bytes
        if room <= 0:
            self.truncated = True
            return
        text = chunk.text
        if len(text) > room:
            text = text[:room]
            self.truncated = True
        self._text_bytes += len(text)
        target = (
            self.stderr if chunk.stream == execution_pb2.STREAM_STDERR else self.stdout
        )
        target.append(text)

    def add_output(self, output: notebook_pb2.Output) -> None:
        """Keep a rich output, or a notice once the cell's total is used up."""
        size = output.ByteSize()
        if self._output_bytes + size > MAX_OUTPUT_BYTES_PER_CELL:
            self.truncated = True
            return
        self._output_bytes += size
        self.outputs.append(output)

    def fill(self, result: notebook_pb2.CellResult) -> None:
        """Copy what was collected into a result message."""
        result.stdout = "".join(self.stdout)
        result.stderr = "".join(self.stderr)
        result.output_truncated = result.output_truncated or self.truncated
        result.outputs.extend(self.outputs)
