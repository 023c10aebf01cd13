"""Pixel super-resolution models (ESRGAN, Compact, SwinIR, SPAN, DAT, OmniSR, ...) loaded with spandrel.

`load.py` reads a checkpoint, `tiles.py` runs it in blended tiles, `resize.py` reaches any size with it,
`upscale.py` is the standalone job (alpha, depth, masks), `find.py` and `catalog.py` serve the model manager.
"""
