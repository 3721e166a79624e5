"""Figures: one module per figure family, all drawn with :mod:`gflow.figures.style`."""
