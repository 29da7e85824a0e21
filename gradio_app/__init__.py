"""The web demo (needs the ``[app]`` extra: gradio).

``build_demo(classifier_or_classifiers)`` in :mod:`gradio_app.app` builds it; ``python -m gradio_app``
(``skinlesion app``) serves it. Importing this package loads nothing heavy.

The modules, one job each: ``app`` (the page's layout and events), ``service`` (the event handlers),
``uploads`` (what a caller sends as a photo), ``bundles`` (the served models), ``server`` (limits,
launch options, memory), ``style`` (theme and CSS), ``texts``/``tasks``/``bands``/``photo_check``
(the words, per task, the risk bands and the "I can't tell" photo checks).
"""

import os

# Gradio reads this when a Blocks is created and when it launches; set it here, before any module of the
# demo imports gradio, so that no telemetry or version check ever leaves the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
