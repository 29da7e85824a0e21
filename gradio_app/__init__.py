"""The web demo (needs the ``[app]`` extra: gradio).

``build_demo(classifier_or_classifiers)`` in :mod:`gradio_app.app` builds it; ``python -m gradio_app``
(``skinlesion app``) serves it. Importing this package loads nothing heavy.
"""
