"""`hpclab bench dashboard`: what the live dashboard costs training, with and without it.

The measurement lives with the widget (`hpclab.widgets.overhead`, see its docstring):
single-process fit with the Dashboard as callback, and a 2-engine Trainer job with the
Dashboard subscribed, each alternated A B A B against the same run without it.

    hpclab bench dashboard [--steps 5000] [--repeats 6] [--engines 2]
"""

from hpclab.widgets.overhead import main  # noqa: F401
