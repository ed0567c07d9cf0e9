"""The lab beside the STM: a PyMeasure bridge, coarse positioner, pulse generator, thermometer.

Everything here is importable without TensorFlow; PyMeasure is imported when an
instrument is built.
"""
