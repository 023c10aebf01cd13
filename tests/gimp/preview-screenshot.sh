#!/usr/bin/env bash
# docs/gimp-preview-running.png: the real GIMP 3.2 (sid chroot, GUI on Xvfb) showing the engine's preview window
# during a run on the sample photo (tests/gimp/batch/preview_shot.py), against a real engine. By hand, as root:
#   sudo tests/gimp/preview-screenshot.sh [OUT.png]      (the sid chroot must exist: run-gimp.sh sid --build)
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../.."
PYTHON=${PYTHON:-.venv/bin/python}
OUTPUT=${1:-docs/gimp-preview-running.png}
source tests/chroots/debian-chroot.sh
ROOT=$(chroot_dir sid)
exec 9>"$ROOT.lock"; flock 9
S=$ROOT/uprez-shot
rm -rf $S; mkdir -p $S/config
cp tests/gimp/batch/preview_shot.py $S/shot.py
"$PYTHON" -c 'import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.resize((im.width // 2, im.height // 2)).save(sys.argv[2])' \
    engine/data/sample.jpg $S/sample.png
UPREZ_CONFIG_DIR=$S/config "$PYTHON" -m engine.cli serve --port 0 --model builtin --device cpu >/dev/null 2>&1 &
EP=$!
for i in $(seq 600); do [ -s $S/config/engine.json ] && break; sleep 0.2; done
rm -rf $ROOT/root/.config/GIMP; mkdir -p $ROOT/root/.config/GIMP/3.2/plug-ins
"$PYTHON" - $ROOT/root/.config/GIMP/3.2/plug-ins/uprez-upscale <<'PY'
import sys
from pathlib import Path
from installers.bridges import Sources, make_executable, stage_folder
sources = Sources(Path("plugin").resolve())
target = stage_folder(sources.gimp_folder, sources.client, Path(sys.argv[1]))
make_executable(target / "uprez-upscale.py")
PY
CHROOT_DISPLAY=""; chroot_pick_display

cat > $S/run.sh <<SH
Xvfb :$CHROOT_DISPLAY -screen 0 1280x800x24 -nolisten tcp 2>/dev/null &
X=\$!
sleep 2
DISPLAY=:$CHROOT_DISPLAY UPREZ_CONFIG_DIR=/uprez-shot/config timeout 300 gimp -n --no-splash --batch-interpreter=python-fu-eval -b 'exec(open("/uprez-shot/shot.py").read())' -b 'from gi.repository import Gimp; Gimp.get_pdb().lookup_procedure("gimp-quit").run(Gimp.get_pdb().lookup_procedure("gimp-quit").create_config())' > /uprez-shot/gimp.log 2>&1
kill \$X
SH
in_root env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 sh /uprez-shot/run.sh
kill $EP
rm -f /tmp/.X$CHROOT_DISPLAY-lock
cat $S/done.txt; echo
"$PYTHON" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).crop((0, 0, 800, 612)).save(sys.argv[2])' \
    $S/preview-shot.png "$OUTPUT" && echo "wrote $OUTPUT"
rm -rf $S "$ROOT/root/.config/GIMP"
