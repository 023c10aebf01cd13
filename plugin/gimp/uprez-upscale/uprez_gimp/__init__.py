"""The GIMP bridge's parts that need no GIMP: pixel formats, geometry, dialog values, the job's round trip.

Standard library only (Python 3.8+), so they import and are tested without `gi`; uprez-upscale.py beside
this package is the thin GIMP adapter that reads pixels and places layers.
"""
