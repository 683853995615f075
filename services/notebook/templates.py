"""Notebook templates: the cells a new notebook starts with."""

from __future__ import annotations

from dataclasses import dataclass

from services.notebook.models import CellType


@dataclass(frozen=True)
class TemplateCell:
    """A cell of a template, before it gets an id."""

    type: CellType
    code: str
    result_name: str = ""


DEMO: tuple[TemplateCell, ...] = (
    TemplateCell(
        CellType.MARKDOWN,
        "# Welcome to Reflow\n"
        "Cells re-run when what they depend on changes. Edit `growth` below "
        "and run it: the table and the plot follow.",
    ),
    TemplateCell(
        CellType.PYTHON,
        "import pandas as pd\n\n"
        "growth = 1.1\n"
        "sales = pd.DataFrame({\n"
        '    "region": ["north", "south", "east", "west"] * 3,\n'
        '    "month": [1] * 4 + [2] * 4 + [3] * 4,\n'
        '    "amount": [round(100 * growth**m, 2) for m in [1] * 4 + [2] * 4'
        " + [3] * 4],\n"
        "})\n"
        "sales",
    ),
    TemplateCell(
        CellType.SQL,
        "SELECT month, SUM(amount) AS total\nFROM sales\nGROUP BY month\n"
        "ORDER BY month",
        result_name="monthly",
    ),
    TemplateCell(
        CellType.PYTHON,
        "import matplotlib.pyplot as plt\n\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        'ax.plot(monthly["month"], monthly["total"], marker="o")\n'
        'ax.set_xlabel("month")\n'
        'ax.set_ylabel("total sales")\n'
        "fig",
    ),
)
