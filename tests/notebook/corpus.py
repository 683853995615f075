"""Small notebooks written for the import tests, one per kind of thing a
Jupyter notebook does that reactive rules forbid or Reflow spells otherwise.

Each notebook is a list of (kind, source) with kind "code" or "markdown".
Some cells fail on purpose, in Jupyter as in Reflow, so that the comparison
of which cells succeed has failures to agree on. A notebook that reads data
files has them in `DATA_FILES`: they sit next to it (its current directory)
top to bottom, and go along with it on import.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import nbformat

Notebook = list[tuple[str, str]]

REDEFINITIONS: Final[Notebook] = [
    ("markdown", "# Measurements\nThe same names, again and again."),
    ("code", "import numpy as np\nx = np.array([1.0, 2.0, 3.0])"),
    ("code", "x.mean()"),
    ("code", "x = np.linspace(0, 1, 5)  # finer\nx.sum()"),
    ("code", "def scale(v):\n    return v * 10\nscale(x)"),
    ("code", "def scale(v):\n    return v * 100\nscale(x)[-1]"),
    ("code", "class Point:\n    pass\np = Point()"),
    ("code", "class Point:\n    def __init__(self):\n        self.x = 1\np = Point()"),
    ("code", "print(p.x, x.size)"),
]

SELF_REBINDING: Final[Notebook] = [
    ("code", "import pandas as pd\npop = pd.Series([3, 1, 2], index=['c', 'a', 'b'])"),
    ("code", "index = ['a', 'b', 'c']\npop = pop.reindex(index)"),
    ("code", "pop = pop * 2\npop"),
    ("code", "count = 0"),
    ("code", "count += 1\ncount += 1"),
    ("code", "name = 'reflow'\nname = name.upper()"),
    ("code", "print(pop.tolist(), count, name)"),
]

LOOPS: Final[Notebook] = [
    ("code", "total = 0\nfor i in range(5):\n    total += i"),
    ("code", "squares = []\nfor i in range(4):\n    squares.append(i * i)"),
    ("code", "for i, s in enumerate(squares):\n    print(i, s)"),
    ("code", "total = total + sum(squares)"),
    ("code", "evens = [i for i in range(10) if i % 2 == 0]\nlen(evens)"),
    ("code", "while total > 10:\n    total -= 7\ntotal"),
    ("code", "print(total, i)"),
]

PLOTS: Final[Notebook] = [
    ("markdown", "## Plots"),
    (
        "code",
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt",
    ),
    (
        "code",
        "fig, ax = plt.subplots()\nax.plot([1, 2, 3], [2, 4, 1])\nax.set_title('one')",
    ),
    (
        "code",
        "fig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])\nfig.tight_layout()",
    ),
    ("code", "fig, axes = plt.subplots(1, 2)\nfor ax in axes:\n    ax.plot([0, 1])"),
    ("code", "print(len(axes))"),
]

MAGICS: Final[Notebook] = [
    ("code", "%matplotlib inline\nimport math"),
    ("code", "%time r = math.sqrt(16)"),
    ("code", "%%time\nroots = [math.sqrt(n) for n in range(4)]"),
    ("code", "!echo from the shell\nprint(r)"),
    ("code", "%who\nlen(roots)"),
    ("code", "%%capture\nprint('quiet')"),
]

MARKDOWN_AND_ERRORS: Final[Notebook] = [
    ("markdown", "# Errors\nA cell that fails, and what follows it."),
    ("code", "values = [1, 2, 0]"),
    ("code", "ratios = [1 / v for v in values]"),
    ("markdown", "The next cell needs `ratios`."),
    ("code", "print(ratios)"),
    ("code", "values = [v + 1 for v in values]\nratios = [1 / v for v in values]"),
    ("code", "print(ratios)"),
    ("code", "undefined_name + 1"),
]

SQL: Final[Notebook] = [
    ("code", "import sqlite3\ncon = sqlite3.connect(':memory:')"),
    (
        "code",
        "con.execute('CREATE TABLE trips (id INTEGER, km REAL)')\n"
        "con.executemany('INSERT INTO trips VALUES (?, ?)', [(1, 2.5), (2, 4.0)])",
    ),
    ("code", "rows = con.execute('SELECT SUM(km) FROM trips').fetchall()\nrows"),
    ("code", "con = sqlite3.connect(':memory:')  # a second database"),
    ("code", "con.execute('CREATE TABLE t (a)')\ncur = con.cursor()"),
    ("code", "cur = con.execute('SELECT COUNT(*) FROM t')\ncur.fetchone()"),
    ("code", "import pandas as pd\npd.read_sql('SELECT * FROM t', con)"),
]

IMPORTS: Final[Notebook] = [
    ("code", "import numpy as np\nimport pandas as pd"),
    ("code", "import numpy as np\na = np.zeros(3)"),
    ("code", "from math import sqrt\nb = sqrt(9)"),
    ("code", "from math import sqrt\nimport pandas as pd\nc = pd.Series([b, sqrt(4)])"),
    ("code", "from numpy import sqrt\nd = sqrt(a + 4)"),
    ("code", "print(a, b, c.tolist(), d)"),
]

DATA: Final[Notebook] = [
    ("markdown", "# Trips\nA CSV and a SQLite database beside the notebook."),
    ("code", "import pandas as pd\nbikes = pd.read_csv('data/bikes.csv')"),
    ("code", "bikes = bikes[bikes.km > 1]\nbikes.km.sum()"),
    ("code", "import sqlite3\ncon = sqlite3.connect('data/trips.db')"),
    ("code", "rows = con.execute('SELECT SUM(km) FROM trips').fetchall()\nrows"),
    ("code", "trips = pd.read_sql('SELECT * FROM trips', con)\ntrips.km.max()"),
    (
        "code",
        "import os\nos.makedirs('out', exist_ok=True)\nbikes.to_csv('out/long.csv')",
    ),
    ("code", "print(open('out/long.csv').read())"),
    ("code", "pd.read_csv('data/missing.csv')"),
]


def _trips_database() -> bytes:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE trips (id INTEGER, km REAL)")
    con.executemany("INSERT INTO trips VALUES (?, ?)", [(1, 2.5), (2, 4.0)])
    con.commit()
    return con.serialize()


DATA_FILES: Final[dict[str, dict[str, bytes]]] = {
    "data_files": {
        "data/bikes.csv": b"id,km\n1,0.5\n2,3.0\n3,7.25\n",
        "data/trips.db": _trips_database(),
    },
}

CORPUS: Final[dict[str, Notebook]] = {
    "redefinitions": REDEFINITIONS,
    "self_rebinding": SELF_REBINDING,
    "loops": LOOPS,
    "plots": PLOTS,
    "magics": MAGICS,
    "markdown_and_errors": MARKDOWN_AND_ERRORS,
    "sql": SQL,
    "imports": IMPORTS,
    "data_files": DATA,
}


def as_ipynb(notebook: Notebook) -> str:
    """The notebook as .ipynb text (nbformat 4)."""
    document = nbformat.v4.new_notebook()
    document.cells = [
        nbformat.v4.new_markdown_cell(source)
        if kind == "markdown"
        else nbformat.v4.new_code_cell(source)
        for kind, source in notebook
    ]
    text: str = nbformat.writes(document)
    return text
