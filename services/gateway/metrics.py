"""The gateway's own Prometheus metrics: its WebSocket connections.

Its RPCs are counted by the shared server interceptor like every service's.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

WEBSOCKETS_OPEN: Final = Gauge(
    "reflow_websocket_connections", "WebSocket connections open right now."
)
WEBSOCKETS_ACCEPTED: Final = Counter(
    "reflow_websocket_connections_accepted",
    "WebSocket connections accepted, by how their authentication went.",
    ("outcome",),
)
