"""``python -m globe.plots --metrics RUN/metrics.csv --out DIR``: the reward and validation curves
of a run, for readers without a W&B account (the entry point of :mod:`globe.plotting`, whose
``__main__`` it runs; same arguments)."""

from __future__ import annotations

import sys

from globe.plotting.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
