"""Tests for services.shared.logs: line formats and secret redaction."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from services.shared import logs, tracing
from tests.shared.echo import Echo, echo_stub, text

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.shared.echo import Context

logger = logging.getLogger("tests.shared.test_logs")

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLW9mLWEtdGVzdC10b2tlbg"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the root logger writes once configured; its old state restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_line_has_the_standard_fields(output: io.StringIO) -> None:
    logs.configure("notebook", "INFO", "json", stream=output)

    logger.info("listening on %d", 50051)

    [entry] = [json.loads(line) for line in lines(output)]
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "level": "INFO",
        "service": "notebook",
        "logger": "tests.shared.test_logs",
        "message": "listening on 50051",
    }


def test_json_time_is_utc_iso_8601(output: io.StringIO) -> None:
    logs.configure("notebook", "INFO", "json", stream=output)

    logger.info("hello")

    assert json.loads(lines(output)[0])["time"].endswith("Z")


def test_json_line_carries_the_traceback(output: io.StringIO) -> None:
    logs.configure("notebook", "INFO", "json", stream=output)

    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("store failed")

    [entry] = [json.loads(line) for line in lines(output)]
    assert "ValueError: boom" in entry["exc_info"]


def test_multiline_message_is_one_json_line(output: io.StringIO) -> None:
    logs.configure("notebook", "INFO", "json", stream=output)

    logger.info("first\nsecond")

    assert len(lines(output)) == 1


def test_text_line_names_level_service_and_logger(output: io.StringIO) -> None:
    logs.configure("execution", "INFO", stream=output)

    logger.warning("kernel restarted")

    [line] = lines(output)
    assert line.endswith(" WARNING execution tests.shared.test_logs: kernel restarted")


def test_records_below_the_level_are_dropped(output: io.StringIO) -> None:
    logs.configure("notebook", "warning", stream=output)

    logger.info("detail")

    assert lines(output) == []


def test_configuring_twice_does_not_duplicate_lines(output: io.StringIO) -> None:
    logs.configure("notebook", "INFO", stream=output)
    logs.configure("notebook", "INFO", stream=output)

    logger.info("once")

    assert len(lines(output)) == 1


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="'LOUD'"):
        logs.configure("notebook", "LOUD")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        logs.configure("notebook", "INFO", "xml")


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("calling with authorization: Bearer abc.def-123", "abc.def-123"),
        (f"token {JWT} minted", JWT),
        ("db postgresql://ada:s3cr3t@db:5432/nb", "s3cr3t"),
        ("connect mysql://root:pa:ss@localhost/x", "pa:ss"),
        ("url https://host/path?user=ada&password=hunter2&x=1", "hunter2"),
        ("OPENAI_API_KEY=sk-proj-AbCdEf0123456789xyz", "AbCdEf0123456789xyz"),
        ("using key sk-AbCdEf0123456789xyz", "AbCdEf0123456789xyz"),
        ("config {'api_key': 'k-123456'}", "k-123456"),
        ("env REFLOW_INTERNAL_SECRET=abcdef123", "abcdef123"),
    ],
)
def test_secrets_never_reach_the_output(
    output: io.StringIO, message: str, secret: str
) -> None:
    logs.configure("gateway", "INFO", "json", stream=output)

    logger.info("%s", message)

    assert secret not in output.getvalue()


def test_redaction_keeps_the_url_user_and_host() -> None:
    assert (
        logs.redact("postgresql://ada:s3cr3t@db:5432/nb")
        == "postgresql://ada:[REDACTED]@db:5432/nb"
    )


def test_redaction_leaves_ordinary_text_alone() -> None:
    message = "cell 'c1' ran in 12 ms on http://localhost:8080/api"

    assert logs.redact(message) == message


def test_secrets_in_a_traceback_are_redacted(output: io.StringIO) -> None:
    logs.configure("notebook", "INFO", stream=output)

    try:
        raise ConnectionError("cannot reach postgresql://ada:s3cr3t@db/nb")
    except ConnectionError:
        logger.exception("store failed")

    assert "s3cr3t" not in output.getvalue()


async def log_while_serving(request: Any, context: Context) -> Any:
    logger.info("serving")
    return request


async def test_json_lines_name_the_trace_of_the_request_they_were_written_for(
    output: io.StringIO,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    tracing.configure("notebook")  # no OTEL_* set: ids in records, nothing exported
    logs.configure("notebook", "INFO", "json", stream=output)

    async with echo_stub(Echo(unary_unary=log_while_serving)) as stub:
        await stub.unary_unary(
            text("x"), metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
        )

    (served,) = [e for e in map(json.loads, lines(output)) if e["message"] == "serving"]
    assert served["trace_id"] == trace_id
    assert len(served["span_id"]) == 16
