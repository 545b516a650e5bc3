"""Figures of a run, drawn with matplotlib's object API (``Figure`` + the Agg canvas, no pyplot).

* :mod:`globe.plotting.errors` — pure data of the test figures: distance errors from a
  predictions CSV, accuracy by distance threshold, the error CDF, map segments;
* :mod:`globe.plotting.prediction_figures` — accuracy-by-distance curve, error CDF, world map;
* :mod:`globe.plotting.world` — background points of the world map (GeoNames cities);
* :mod:`globe.plotting.run_metrics` — reward and validation curves of a CSVLogger
  ``metrics.csv``; ``python -m globe.plotting --metrics metrics.csv --out DIR`` draws them;
* :mod:`globe.plotting.png` — atomic PNG writing.

The test figures are drawn after ``trainer.test`` by :class:`callbacks.test_plots.TestPlots`.
"""
