"""Run a notebook's code cells top to bottom in this one Python process, as
Jupyter would (IPython's shell, so magics behave as they do there), and
print which succeeded as a JSON list.

    python -m tests.notebook.top_to_bottom < notebook.json

The input is a JSON list of cell sources. Run in a subprocess: the cells'
globals, figures and printed output must not touch the test process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys


def main() -> None:
    sources: list[str] = json.load(sys.stdin)
    os.environ["MPLBACKEND"] = "Agg"
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    shell = TerminalInteractiveShell.instance()
    succeeded = []
    for source in sources:
        with contextlib.redirect_stdout(io.StringIO()):
            result = shell.run_cell(source, store_history=True)
        succeeded.append(bool(result.success))
    print(json.dumps(succeeded), file=sys.__stdout__)


if __name__ == "__main__":
    main()
