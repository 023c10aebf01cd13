"""The Uprez desktop window (PyQt6): open an image, pick a region and settings, upscale through the engine, save."""
