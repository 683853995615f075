"""The kernel process: running cells, capturing output, errors, interrupts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel.capture import truncation_notice
from tests.execution.worker_harness import KernelHarness, start_kernel

if TYPE_CHECKING:
    from collections.abc import Iterator

SUCCESS = notebook_pb2.CELL_STATUS_SUCCESS
ERROR = notebook_pb2.CELL_STATUS_ERROR
INTERRUPTED = notebook_pb2.CELL_STATUS_INTERRUPTED


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelHarness]:
    """One kernel for the tests that do not depend on a fresh namespace."""
    with start_kernel() as harness:
        yield harness


@pytest.fixture
def fresh_kernel() -> Iterator[KernelHarness]:
    with start_kernel() as harness:
        yield harness


def wait_for_stdout(kernel: KernelHarness, cell_id: str, text: str) -> None:
    """Read the cell's events until `text` has been printed."""
    seen = ""
    while text not in seen:
        event = kernel.read_event()
        assert event.cell_id == cell_id
        assert not event.HasField("done"), f"cell finished early: {event.done}"
        seen += event.stream_chunk.text


def test_last_expression_is_displayed(kernel: KernelHarness) -> None:
    run = kernel.run("1 + 1")

    assert run.status == SUCCESS
    assert run.texts == ["2"]


@pytest.mark.parametrize("code", ["x_assigned = 1", "None", "def f():\n    return 1"])
def test_statements_and_none_are_not_displayed(
    kernel: KernelHarness, code: str
) -> None:
    run = kernel.run(code)

    assert run.status == SUCCESS
    assert run.outputs == []


@pytest.mark.parametrize("code", ["1 + 1;", "1 + 1;  # quiet", "x = 2\nx;\n\n"])
def test_trailing_semicolon_suppresses_the_value(
    kernel: KernelHarness, code: str
) -> None:
    run = kernel.run(code)

    assert run.status == SUCCESS
    assert run.outputs == []


def test_semicolon_inside_a_string_does_not_suppress(kernel: KernelHarness) -> None:
    run = kernel.run("'a;'")

    assert run.texts == ["'a;'"]


def test_state_persists_across_cells(kernel: KernelHarness) -> None:
    kernel.run("persisted = 41")

    run = kernel.run("persisted + 1")

    assert run.texts == ["42"]


def test_delete_names_in_execute_request(kernel: KernelHarness) -> None:
    kernel.run("doomed = 1")

    run = kernel.run("doomed", delete_names=["doomed", "never_defined"])

    assert run.status == ERROR
    assert run.error.type == "NameError"


def test_delete_names_request_is_answered(kernel: KernelHarness) -> None:
    kernel.run("gone = 1")

    kernel.send(
        kernel_pb2.KernelRequest(
            delete_names=kernel_pb2.DeleteNamesRequest(names=["gone"])
        )
    )
    reply = kernel.read_event()
    run = kernel.run("'gone' in globals()")

    assert reply.WhichOneof("event") == "names_deleted"
    assert run.texts == ["False"]


def test_namespace_is_a_fresh_main_module(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import pickle\nclass Point:\n    pass\n"
        "(__name__, type(pickle.loads(pickle.dumps(Point()))).__name__)"
    )

    assert run.texts == ["('__main__', 'Point')"]


def test_print_shell_and_raw_writes_arrive_in_order(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import os\n"
        "print('one')\n"
        "os.system('echo two')\n"
        "os.write(1, b'three\\n')\n"
        "print('four')\n"
    )

    assert run.stdout == "one\ntwo\nthree\nfour\n"


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos.write(1, b'raw\\n')",
        "import os\nos.system('echo raw')",
        "import ctypes\nctypes.CDLL(None).printf(b'raw\\n')",
    ],
)
def test_output_that_never_passed_through_print_still_ends_before_the_cell(
    kernel: KernelHarness, code: str
) -> None:
    # Nothing in sys.stdout's buffer: only the pipe (or libc's buffer) holds it.
    for _ in range(20):
        assert kernel.run(code).stdout == "raw\n"


@pytest.mark.parametrize(
    "spawn",
    [
        "os.system('echo b')",
        "subprocess.run(['echo', 'b'], check=True)",
        "subprocess.Popen('echo b', shell=True).wait()",
        "asyncio.run(run_echo())",
        # A forked child has no capture thread: it writes straight to fd 1.
        "child = os.fork()\n"
        "if child == 0:\n    print('b')\n    os._exit(0)\n"
        "os.waitpid(child, 0)",
        "process = multiprocessing.get_context('fork').Process(target=print, "
        "args=('b',))\nprocess.start()\nprocess.join()",
    ],
)
def test_prints_around_a_subprocess_keep_their_order(
    kernel: KernelHarness, spawn: str
) -> None:
    run = kernel.run(
        "import asyncio, multiprocessing, os, subprocess\n"
        "async def run_echo():\n"
        "    echo = await asyncio.create_subprocess_exec('echo', 'b')\n"
        "    await echo.wait()\n"
        f"print('a')\n{spawn}\nprint('c')\n"
    )

    assert run.status == SUCCESS, run.error.traceback
    assert run.stdout == "a\nb\nc\n"


def test_unfinished_line_comes_before_a_subprocess(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import os, sys\nprint('a', end='')\nos.system('echo b')\n"
        "sys.stderr.write('x')\nos.system('echo y >&2')"
    )

    assert run.stdout == "ab\n"
    assert run.stderr == "xy\n"


def test_flush_orders_a_print_before_a_raw_write(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import os, sys\n"
        "for i in range(3):\n"
        "    print(f'print {i}', flush=True)\n"
        "    os.write(1, f'raw {i}\\n'.encode())\n"
        "    sys.stdout.write(f'write {i}\\n')\n"
        "    sys.stdout.flush()\n"
    )

    assert run.stdout == "".join(f"print {i}\nraw {i}\nwrite {i}\n" for i in range(3))


def test_flushed_prints_are_streamed(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import time\nfor i in range(5):\n"
        "    print(i, end=' ', flush=True)\n    time.sleep(0.1)"
    )

    assert run.stdout == "0 1 2 3 4 "
    assert len(run.chunks) >= 3


def test_bytes_written_to_the_buffer_keep_their_order(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import sys\n"
        "print('a')\n"
        "sys.stdout.buffer.write(b'b\\n')\n"
        "print('c')\n"
        "sys.stdout.buffer.write(memoryview('\u00e9\\n'.encode()))\n"
        "sys.stdout.buffer.flush()\n"
        "sys.stderr.buffer.write(b'err\\n')\n"
        "print('d')"
    )

    assert run.stdout == "a\nb\nc\n\u00e9\nd\n"
    assert run.stderr == "err\n"


def test_sys_stdout_looks_like_a_text_stream(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import sys\n"
        "(sys.stdout.isatty(), sys.stdout.fileno(), sys.stderr.fileno(),\n"
        " sys.stdout.encoding, sys.stdout.errors, sys.stdout.writable(),\n"
        " sys.stdout.buffer.fileno(), sys.stdout.buffer.isatty(),\n"
        " sys.stdout.write('xy'), sys.stdout.buffer.write(b'z'))"
    )
    wrong_type = kernel.run("import sys\nsys.stdout.write(5)")
    surrogate = kernel.run("print('\\udcff')")

    assert run.texts == [
        "(False, 1, 2, 'utf-8', 'backslashreplace', True, 1, False, 2, 1)"
    ]
    assert run.stdout == "xyz"
    assert wrong_type.error.type == "TypeError"
    assert surrogate.stdout == "\\udcff\n"


def test_reconfigured_stdout_still_captures(fresh_kernel: KernelHarness) -> None:
    run = fresh_kernel.run(
        "import sys\nsys.stdout.reconfigure(line_buffering=True)\n"
        "print('one')\nsys.stdout.reconfigure(line_buffering=False)\nprint('two')\n"
        "sys.stdout.reconfigure(encoding='ascii')\nprint('\u00e9')\n"
        "sys.stdout.reconfigure(encoding='utf-8')\nprint('\u00e9')"
    )

    assert run.status == SUCCESS
    assert run.stdout == "one\ntwo\n\\xe9\n\u00e9\n"


def test_threads_printing_keep_their_lines(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import threading\n"
        "def count(name):\n"
        "    for i in range(2000):\n"
        "        print(f'{name} {i}')\n"
        "threads = [threading.Thread(target=count, args=(n,)) for n in 'ab']\n"
        "for t in threads:\n    t.start()\n"
        "for t in threads:\n    t.join()"
    )

    lines = run.stdout.splitlines()
    assert sorted(lines) == sorted(f"{n} {i}" for n in "ab" for i in range(2000))
    for name in "ab":
        mine = [line for line in lines if line.startswith(name)]
        assert mine == [f"{name} {i}" for i in range(2000)]


def test_print_keeps_the_builtins_meaning(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import sys, io\n"
        "print(1, 'two', 3.0, sep='-', end='!\\n')\n"
        "print()\n"
        "print('a', 'b', sep=None, end=None)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "elsewhere = io.StringIO()\n"
        "print('kept', file=elsewhere)\n"
        "print(elsewhere.getvalue(), end='')\n"
        "try:\n    print('x', sep=3)\nexcept TypeError as error:\n    print(error)"
    )

    assert (
        run.stdout == "1-two-3.0!\n\na b\nkept\nsep must be None or a string, not int\n"
    )
    assert run.stderr == "to stderr\n"


def test_big_writes_are_delivered_whole(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import sys\nsys.stdout.write('x' * 1_000_000)\nprint()\n"
        "for i in range(3):\n    sys.stdout.write('y' * 100_000)"
    )

    assert run.stdout == "x" * 1_000_000 + "\n" + "y" * 300_000


def test_stderr_is_separate_from_stdout(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import os, sys\nprint('out')\nprint('err', file=sys.stderr)\n"
        "os.system('echo shell-err >&2')"
    )

    assert run.stdout == "out\n"
    assert run.stderr == "err\nshell-err\n"


def test_many_lines_arrive_in_few_messages(kernel: KernelHarness) -> None:
    lines = 100_000

    run = kernel.run(f"for i in range({lines}):\n    print(i)")

    assert run.stdout == "".join(f"{i}\n" for i in range(lines))
    assert len(run.chunks) < lines / 200


def test_output_is_streamed_while_the_cell_runs(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.1)"
    )

    assert run.stdout == "0\n1\n2\n3\n4\n"
    assert len(run.chunks) >= 3


def test_flood_is_capped_and_the_kernel_stays_responsive(kernel: KernelHarness) -> None:
    limit = 256 * 1024
    started = time.monotonic()

    # 10^7 lines, printed a thousand at a time.
    flood = kernel.run(
        "for _ in range(10_000):\n    print('line\\n' * 999 + 'line')",
        output_limit_bytes=limit,
    )
    after = kernel.run("'still here'")

    assert flood.status == SUCCESS
    assert flood.done.output_truncated
    assert flood.chunks[-1].truncated
    assert flood.stdout.endswith(truncation_notice(limit))
    assert len(flood.stdout) == limit + len(truncation_notice(limit))
    assert not any(chunk.truncated for chunk in flood.chunks[:-1])
    assert after.texts == ["'still here'"]
    assert not after.done.output_truncated
    assert time.monotonic() - started < 30


def test_output_within_the_limit_is_not_truncated(kernel: KernelHarness) -> None:
    run = kernel.run("print('x' * 99)", output_limit_bytes=100)

    assert run.stdout == "x" * 99 + "\n"
    assert not run.done.output_truncated


def test_exception_traceback_shows_cell_lines_only(kernel: KernelHarness) -> None:
    run = kernel.run("x = 1\n\ndef f():\n    return 1 / 0\n\nf()", cell_id="abc")

    assert run.status == ERROR
    assert run.error.type == "ZeroDivisionError"
    assert run.error.message == "division by zero"
    assert [(f.cell_id, f.line, f.function) for f in run.error.frames] == [
        ("abc", 6, "<module>"),
        ("abc", 4, "f"),
    ]
    assert run.error.frames[1].source_line == "return 1 / 0"
    assert run.error.traceback.startswith("Traceback (most recent call last):\n")
    assert "  Cell abc, line 4, in f\n    return 1 / 0\n" in run.error.traceback
    assert "worker.py" not in run.error.traceback
    assert "File " not in run.error.traceback


def test_library_frames_called_from_a_cell_are_kept(kernel: KernelHarness) -> None:
    run = kernel.run("import json\njson.loads('{')", cell_id="lib")

    assert run.error.type == "JSONDecodeError"
    assert run.error.frames[0].cell_id == "lib"
    assert any(f.filename.endswith("json/decoder.py") for f in run.error.frames)


def test_huge_exception_message_is_cut(kernel: KernelHarness) -> None:
    run = kernel.run("raise ValueError('x' * 10**7)")
    after = kernel.run("'alive'")

    assert run.error.type == "ValueError"
    assert len(run.error.message) < 20_000
    assert len(run.error.traceback) < 70_000
    assert after.texts == ["'alive'"]


def test_deep_recursion_keeps_a_bounded_traceback(kernel: KernelHarness) -> None:
    run = kernel.run("def down(n):\n    return down(n + 1)\ndown(0)")

    assert run.error.type == "RecursionError"
    assert run.error.frames[0].function == "<module>"
    assert len(run.error.frames) <= 200


def test_syntax_error_is_a_cell_error(kernel: KernelHarness) -> None:
    run = kernel.run("x = 1\ny = (", cell_id="bad")
    after = kernel.run("1")

    assert run.status == ERROR
    assert run.error.type == "SyntaxError"
    assert [(f.cell_id, f.line) for f in run.error.frames] == [("bad", 2)]
    assert "Cell bad, line 2" in run.error.traceback
    assert after.status == SUCCESS


def test_system_exit_fails_the_cell_not_the_kernel(kernel: KernelHarness) -> None:
    run = kernel.run("import sys\nsys.exit(3)")
    after = kernel.run("'alive'")

    assert run.status == ERROR
    assert run.error.type == "SystemExit"
    assert after.texts == ["'alive'"]


def test_top_level_await(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import asyncio\nawaited = await asyncio.sleep(0, result=7)\n"
        "await asyncio.sleep(0, result=awaited * 6)"
    )

    assert run.status == SUCCESS
    assert run.texts == ["42"]


def test_markdown_cell_is_shown_as_markdown(kernel: KernelHarness) -> None:
    run = kernel.run("# Title\n*text*", cell_type=notebook_pb2.CELL_TYPE_MARKDOWN)

    assert run.status == SUCCESS
    assert [(o.mime_type, o.text) for o in run.outputs] == [
        ("text/markdown", "# Title\n*text*")
    ]


def test_display_and_prints_keep_their_order(kernel: KernelHarness) -> None:
    run = kernel.run("print('a')\ndisplay(1, 'two')\nprint('b')\n3")

    assert run.kinds() == [
        "stream_chunk",
        "output",
        "output",
        "stream_chunk",
        "output",
        "done",
    ]
    assert run.texts == ["1", "'two'", "3"]


def test_input_gets_end_of_file(kernel: KernelHarness) -> None:
    run = kernel.run("input()")

    assert run.error.type == "EOFError"


def test_input_prompt_is_printed_first(kernel: KernelHarness) -> None:
    run = kernel.run("print('before')\ninput('prompt> ')")

    assert run.error.type == "EOFError"
    assert run.stdout == "before\nprompt> "


def test_kernel_never_imports_grpc(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import sys\nsorted(m for m in sys.modules if m.split('.')[0] == 'grpc')"
    )

    assert run.texts == ["[]"]


def test_figures_left_open_become_images_once(kernel: KernelHarness) -> None:
    run = kernel.run(
        "import matplotlib.pyplot as plt\n"
        "first = plt.figure()\nplt.plot([1, 2])\n"
        "second = plt.figure()\nplt.plot([2, 1])\n"
        "second"
    )
    after = kernel.run("import matplotlib.pyplot as plt\nplt.get_fignums()")

    assert [o.mime_type for o in run.outputs] == ["image/png", "image/png"]
    assert all(o.binary.startswith(b"\x89PNG\r\n\x1a\n") for o in run.outputs)
    assert after.texts == ["[]"]


def test_artists_as_last_expression_show_only_their_figure(
    kernel: KernelHarness,
) -> None:
    run = kernel.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])")

    assert [o.mime_type for o in run.outputs] == ["image/png"]


def test_plt_show_does_not_lose_the_figure(kernel: KernelHarness) -> None:
    run = kernel.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")

    assert run.status == SUCCESS
    assert [o.mime_type for o in run.outputs] == ["image/png"]
    assert run.stderr == ""


def test_sigint_interrupts_a_busy_cell_and_keeps_state(
    fresh_kernel: KernelHarness,
) -> None:
    fresh_kernel.run("kept = 5")
    cell_id = fresh_kernel.start_cell("print('spinning')\nwhile True:\n    pass")
    wait_for_stdout(fresh_kernel, cell_id, "spinning")

    fresh_kernel.interrupt()
    run = fresh_kernel.finish_cell(cell_id)
    after = fresh_kernel.run("kept")

    assert run.status == INTERRUPTED
    assert run.error.type == "KeyboardInterrupt"
    assert [frame.cell_id for frame in run.error.frames] == [cell_id]
    assert "services/execution" not in run.error.traceback
    assert after.texts == ["5"]


def test_sigint_interrupts_a_top_level_await(fresh_kernel: KernelHarness) -> None:
    cell_id = fresh_kernel.start_cell(
        "import asyncio\nprint('waiting')\nawait asyncio.sleep(3600)"
    )
    wait_for_stdout(fresh_kernel, cell_id, "waiting")

    fresh_kernel.interrupt()
    run = fresh_kernel.finish_cell(cell_id)
    after = fresh_kernel.run("await asyncio.sleep(0, result='next')")

    assert run.status == INTERRUPTED
    assert after.texts == ["'next'"]


@pytest.mark.parametrize(
    "loop", ["while True:\n    display('x')", "while True:\n    print('x' * 100)"]
)
def test_sigint_during_output_keeps_the_channel_intact(
    fresh_kernel: KernelHarness, loop: str
) -> None:
    cell_id = fresh_kernel.start_cell(loop, output_limit_bytes=1 << 30)
    first = fresh_kernel.read_event()
    assert first.WhichOneof("event") in ("output", "stream_chunk")

    fresh_kernel.interrupt()
    run = fresh_kernel.finish_cell(cell_id)
    after = fresh_kernel.run("'intact'")

    assert run.status == INTERRUPTED
    assert after.texts == ["'intact'"]


def test_repeated_sigints_during_heavy_printing_leave_a_working_kernel(
    fresh_kernel: KernelHarness,
) -> None:
    # The cell catches each interrupt and goes on printing: a lock left held
    # by an interrupt inside print() would hang the next flush.
    cell_id = fresh_kernel.start_cell(
        "import sys\ncaught = 0\n"
        "while caught < 5:\n"
        "    try:\n"
        "        while True:\n"
        "            print('y' * 40)\n"
        "            print('z', flush=True)\n"
        "            sys.stderr.write('e' * 30 + '\\n')\n"
        "    except KeyboardInterrupt:\n"
        "        caught += 1\n",
        output_limit_bytes=1 << 30,
    )
    events = []
    for _ in range(5):
        # Let the cell print on for a while before each interrupt.
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            events.append(fresh_kernel.read_event())
            assert not events[-1].HasField("done")
        fresh_kernel.interrupt()
    run = fresh_kernel.finish_cell(cell_id)
    run.events[:0] = events
    after = fresh_kernel.run("print('after')\ncaught")

    assert run.status == SUCCESS, run.error.traceback
    assert set(run.stdout.splitlines()) <= {"y" * 40, "z"}
    assert set(run.stderr.splitlines()) <= {"e" * 30}
    assert after.stdout == "after\n"
    assert after.texts == ["5"]


@pytest.mark.parametrize(
    "loop",
    [
        "while True:\n    print(i := i + 1)",
        "while True:\n    print('x' * 1000, flush=True)",
        "while True:\n    sys.stdout.buffer.write(b'x' * 70_000)",
    ],
)
def test_sigints_during_printing_never_hang_the_kernel(
    fresh_kernel: KernelHarness, loop: str
) -> None:
    for _ in range(3):
        cell_id = fresh_kernel.start_cell(
            f"import sys\ni = 0\n{loop}", output_limit_bytes=1 << 30
        )
        fresh_kernel.read_event()
        fresh_kernel.interrupt()
        run = fresh_kernel.finish_cell(cell_id)
        assert run.status == INTERRUPTED

    after = fresh_kernel.run("print('still printing')")

    assert after.stdout == "still printing\n"


def test_background_thread_output_goes_to_the_next_cell(
    fresh_kernel: KernelHarness,
) -> None:
    first = fresh_kernel.run(
        "import threading, time\n"
        "late = threading.Thread(target=lambda: (time.sleep(0.2), print('late')))\n"
        "late.start()"
    )
    time.sleep(0.5)

    second = fresh_kernel.run("late.join()")

    assert first.stdout == ""
    assert second.stdout == "late\n"


def test_sigint_while_idle_is_ignored(fresh_kernel: KernelHarness) -> None:
    fresh_kernel.interrupt()

    run = fresh_kernel.run("'fine'")

    assert run.status == SUCCESS
    assert run.texts == ["'fine'"]


def test_background_output_goes_to_the_next_cell(fresh_kernel: KernelHarness) -> None:
    # The subprocess holds fd 1 and prints after its cell finished.
    first = fresh_kernel.run(
        "import subprocess\nlate = subprocess.Popen('sleep 0.2; echo late', shell=True)"
    )

    second = fresh_kernel.run("late.wait()")

    assert first.stdout == ""
    assert second.stdout == "late\n"
    assert second.texts == ["0"]


def test_shutdown_request_exits_cleanly(fresh_kernel: KernelHarness) -> None:
    assert fresh_kernel.shutdown() == 0


def test_closing_sys_stdout_does_not_silence_later_cells(
    kernel: KernelHarness,
) -> None:
    kernel.run("import sys\nsys.stdout.close()")

    run = kernel.run("print('back')")

    assert run.stdout == "back\n"


def test_stream_chunks_name_their_stream(kernel: KernelHarness) -> None:
    run = kernel.run("print('x')")

    assert [c.stream for c in run.chunks] == [execution_pb2.STREAM_STDOUT]
