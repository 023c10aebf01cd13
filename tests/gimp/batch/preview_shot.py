"""Run by the real GIMP GUI (tests/gimp/preview-screenshot.sh): the plug-in's preview window during a real job on
the sample photo, shown in GIMP, captured from the X screen at the second preview; done.txt says how many previews
came and how many images are open after the run (1: the preview image is gone)."""
import os
import sys
import time

import gi

for name, version in (("Gimp", "3.0"), ("Gegl", "0.4"), ("Gdk", "3.0"), ("GimpUi", "3.0")):
    gi.require_version(name, version)
from gi.repository import Gdk, Gegl, Gimp, GimpUi  # noqa: E402

PLUGIN = os.path.join(Gimp.directory(), "plug-ins", "uprez-upscale")
sys.path.insert(0, PLUGIN)
import uprez_gimp_ui  # noqa: E402
from uprez_client import Client  # noqa: E402
from uprez_gimp import formats, job  # noqa: E402

GimpUi.init("uprez-shot")
out = "/uprez-shot"
try:
    from gi.repository import Gio

    src = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(out + "/sample.png"))
    layer = src.get_layers()[0]
    disp = Gimp.Display.new(src)
    Gimp.displays_flush()
    time.sleep(3)
    w, h = layer.get_width(), layer.get_height()
    data = bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))
    window = uprez_gimp_ui.PreviewWindow(show=True)
    n = [0]
    def on_preview(png):
        window.update(png)
        n[0] += 1
        if n[0] == 2:
            time.sleep(2.5)
            root = Gdk.get_default_root_window()
            shot = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
            shot.savev(out + "/preview-shot.png", "png", [], [])
    transfer = formats.transfer_for(src.get_precision().value_nick)
    job.run_job(Client(), data, w, h, transfer, {"scale": 2.0, "preset": "creative", "seed": 1, "preview_every": 1},
                on_preview=on_preview)
    window.close()
    report = f"previews {n[0]} images after {len(Gimp.get_images())}"
except Exception:
    import traceback

    report = traceback.format_exc()
with open(out + "/done.txt", "w") as f:
    f.write(report)
