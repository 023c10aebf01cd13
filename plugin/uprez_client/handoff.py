"""Sending an editor's layer to the Uprez desktop window ("Open in Uprez window"): the layer as a PNG file in the
config folder's handoff/ folder, and the window started on it. Standard library only, Python 3.8+.

The window command comes from bridge.json: "gui_command" (the installer writes it), else the engine's
"start_command" with its `serve` turned into `gui` (`uprez serve` -> `uprez gui`, `python -m engine.cli serve`
-> `python -m engine.cli gui`).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import zlib
from typing import Sequence

from .discovery import config_dir
from .launcher import bridge_settings
from .protocol import PNG_SIGNATURE

KEEP_S = 7 * 24 * 3600  # handed-off files older than a week are removed when the next one is written


class HandoffError(RuntimeError):
    """Says what to do: no window command, or the window could not be started."""


def png_bytes(rgba: bytes, width: int, height: int, depth: int = 8, icc: bytes | None = None) -> bytes:
    """A PNG of RGBA samples (8-bit, or 16-bit big-endian as PNG stores them), with the ICC profile as iCCP."""
    if depth not in (8, 16) or len(rgba) != width * height * 4 * depth // 8:
        raise ValueError(f"{len(rgba)} bytes are not {width}x{height} RGBA at {depth} bits")
    stride = width * 4 * depth // 8
    raw = b"".join(b"\x00" + rgba[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    out = PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 6, 0, 0, 0))
    if icc:
        out += chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    return out + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def bgra_to_rgba(data: bytes, depth: int) -> bytes:
    """Krita's B, G, R, A little-endian samples as PNG's R, G, B, A (big-endian at 16 bits)."""
    size = depth // 8
    src = memoryview(data)
    out = bytearray(len(data))
    pixel = 4 * size
    for channel_out, channel_in in ((0, 2), (1, 1), (2, 0), (3, 3)):
        for byte in range(size):
            # PNG is big-endian: the little-endian low byte goes last
            out[channel_out * size + (size - 1 - byte)::pixel] = src[channel_in * size + byte::pixel]
    return bytes(out)


def swap16(data: bytes) -> bytes:
    """16-bit samples from little-endian (GEGL's, on the machines GIMP runs on) to PNG's big-endian."""
    out = bytearray(len(data))
    out[0::2] = data[1::2]
    out[1::2] = data[0::2]
    return bytes(out)


def handoff_path(name: str, now: float | None = None) -> str:
    """A new file name in <config folder>/handoff/ for a layer called `name`; old hand-offs are removed there."""
    folder = os.path.join(config_dir(), "handoff")
    os.makedirs(folder, exist_ok=True)
    now = time.time() if now is None else now
    for old in os.listdir(folder):
        path = os.path.join(folder, old)
        try:
            if now - os.path.getmtime(path) > KEEP_S:
                os.remove(path)
        except OSError:
            pass
    safe = re.sub(r"[^\w.-]+", "-", name).strip("-.")[:60] or "layer"
    return os.path.join(folder, f"{safe}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}.png")


def gui_command(settings: dict | None = None) -> list[str] | None:
    settings = bridge_settings() if settings is None else settings
    command = settings.get("gui_command")
    if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        return list(command)
    start = settings.get("start_command")
    if isinstance(start, list) and "serve" in start and all(isinstance(part, str) for part in start):
        return start[:start.index("serve")] + ["gui"]  # the engine's own flags after `serve` are not the window's
    return None


def open_in_window(path: str, command: Sequence[str] | None = None) -> subprocess.Popen:
    """Start the window on `path` (it outlives the editor's plug-in); raises HandoffError saying what to do."""
    command = list(command or gui_command() or [])
    if not command:
        raise HandoffError(f"no command for the Uprez window in {os.path.join(config_dir(), 'bridge.json')}; run the "
                           f"installer, or open {path} with `uprez gui` yourself")
    flags: dict = {"start_new_session": True} if sys.platform != "win32" else {
        "creationflags": getattr(subprocess, "DETACHED_PROCESS", 0)}
    try:
        return subprocess.Popen([*command, path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, **flags)
    except OSError as exc:
        raise HandoffError(f"could not start the Uprez window with {' '.join(command)} ({exc}); open {path} with "
                           "`uprez gui` yourself") from None
