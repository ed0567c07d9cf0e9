"""Labelling tool: a small local web page to vote on tip states, one CSV of votes per labeller.

Import cost is light (numpy, Pillow, the standard library). :mod:`.votes` keeps
one labeller's append-only vote log, :mod:`.merge` turns all logs into the
``labels.csv`` that ``stmtip train`` reads, :mod:`.sources` lists frames from a
folder or a QCoDeS dataset, :mod:`.render` draws a frame as a PNG and
:mod:`.server` serves the page on 127.0.0.1. TensorFlow is imported only when a
model bundle is given to show its guess.
"""

from __future__ import annotations
