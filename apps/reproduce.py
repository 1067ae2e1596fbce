"""Reproduce the paper's experiments end to end: `uv run apps/reproduce.py --help`.

Stages, per env family: learning-history generation -> AD training (Mamba and transformer) ->
in-context evaluation on unseen test tasks -> MACAW and MQL -> figures and a Markdown report.
"""

from __future__ import annotations

import sys

from icrl.apps import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
