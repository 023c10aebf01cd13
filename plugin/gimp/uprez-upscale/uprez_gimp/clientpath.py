"""Makes `uprez_client` importable: the copy an installer puts beside the plug-in, else the checkout's."""

from __future__ import annotations

import os
import sys


def client_folder(plugin_dir: str) -> str | None:
    """The folder to put on sys.path so `import uprez_client` works, or None when there is no client.

    An installed plug-in carries `uprez_client/` beside its .py file; in a checkout the file lives in
    plugin/gimp/uprez-upscale/ and the client in plugin/, two folders up.
    """
    for folder in (plugin_dir, os.path.dirname(os.path.dirname(plugin_dir))):
        if os.path.isfile(os.path.join(folder, "uprez_client", "__init__.py")):
            return folder
    return None


def use_client(plugin_dir: str) -> None:
    """Put the client's folder first on sys.path; raises ImportError saying what to reinstall."""
    folder = client_folder(plugin_dir)
    if folder is None:
        raise ImportError(f"the Uprez client is missing: expected {os.path.join(plugin_dir, 'uprez_client')}; "
                          "reinstall the plug-in with the Uprez installer")
    if folder not in sys.path:
        sys.path.insert(0, folder)
