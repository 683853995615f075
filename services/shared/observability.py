"""What a service's ``__main__`` calls once to be observable: tracing and metrics."""

from __future__ import annotations

import logging

from services.shared import tracing
from services.shared.metrics import serve_metrics

logger = logging.getLogger(__name__)


def start_observability(
    service: str, listen_host: str, metrics_port: int | None
) -> None:
    """Configure tracing from ``OTEL_*`` and serve ``/metrics`` if a port is set.

    Call after ``logs.configure`` (its lines name the metrics port, which a
    test that asked for port 0 reads) and before building servers and
    channels (they take the tracing instrumentation when spans are exported).
    """
    tracing.configure(service)
    if metrics_port is not None:
        port = serve_metrics(listen_host, metrics_port)
        logger.info("metrics on port %d (GET /metrics)", port)
