"""Where the engine client comes from: the copy an installer put inside this package, or a checkout's plugin/."""

from __future__ import annotations

import os
import sys

try:  # installed: pykrita/uprez_krita/uprez_client/
    from . import uprez_client  # type: ignore[attr-defined]
    from .uprez_client import handoff, idle, launcher, options, placement, regions, remote_choice  # type: ignore[attr-defined]
except ImportError:
    # A checkout: plugin/krita/uprez_krita/ -> plugin/uprez_client/
    _plugin_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isdir(os.path.join(_plugin_dir, "uprez_client")) and _plugin_dir not in sys.path:
        sys.path.append(_plugin_dir)
    import uprez_client  # type: ignore[no-redef]
    from uprez_client import handoff, idle, launcher, options, placement, regions, remote_choice  # type: ignore[no-redef]

__all__ = ["handoff", "idle", "launcher", "options", "placement", "regions", "remote_choice", "uprez_client"]
