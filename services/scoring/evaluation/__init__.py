"""Age/gender evaluation on labelled folders: data reading, the full face pipeline, cached member outputs, metrics.

``services.scoring.eval_age`` (the ``howhot eval age`` command) and ``services.scoring.report`` sit on top of it; the
training package reuses the cached backbone features so nothing runs the networks twice.
"""
