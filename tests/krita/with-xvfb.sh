#!/bin/sh
# Runs a command on a private Xvfb display (inside a chroot too, where xvfb-run's xauth may be missing).
# UPREZ_XVFB_DISPLAY: the display number to use (run-krita.sh picks one the host does not use: see
# tests/chroots/debian-chroot.sh); else Xvfb picks a free one itself.
FILE="${TMPDIR:-/tmp}/uprez-xvfb-display.$$"
if [ -n "${UPREZ_XVFB_DISPLAY:-}" ]; then
    Xvfb ":$UPREZ_XVFB_DISPLAY" -screen 0 1280x900x24 -nolisten tcp 2>/dev/null &
    XVFB=$!
    for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X$UPREZ_XVFB_DISPLAY" ] && break; sleep 0.1; done
    echo "$UPREZ_XVFB_DISPLAY" >"$FILE"
else
    Xvfb -displayfd 3 -screen 0 1280x900x24 -nolisten tcp 3>"$FILE" 2>/dev/null &
    XVFB=$!
    for _ in $(seq 100); do [ -s "$FILE" ] && break; sleep 0.1; done
fi
DISPLAY=":$(cat "$FILE")"
export DISPLAY
rm -f "$FILE"
"$@"
STATUS=$?
kill "$XVFB"
exit "$STATUS"
