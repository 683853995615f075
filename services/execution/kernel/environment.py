"""The environment kernels start with: an allow-list of the service's own.

The execution service holds secrets in its environment
(``REFLOW_INTERNAL_SECRET``, cloud credentials); kernels inherit the zygote's
environment, so the zygote is started with only what is named here: how to
find programs, the locale and time zone, and numeric libraries' tuning
(some machines set ``OPENBLAS_CORETYPE`` because OpenBLAS misdetects their
processor). Anything else a notebook needs comes from the notebook itself.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

ALLOWED: Final = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "LOG_FORMAT"}
)
ALLOWED_PREFIXES: Final = ("LC_", "OPENBLAS_", "OMP_", "MKL_")


def kernel_environment(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The allowed part of ``env``, plus the plotting backend kernels use."""
    kept = {
        name: value
        for name, value in env.items()
        if name in ALLOWED or name.startswith(ALLOWED_PREFIXES)
    }
    # A kernel has no display; Agg must be chosen before pyplot is imported.
    kept["MPLBACKEND"] = "Agg"
    return kept
