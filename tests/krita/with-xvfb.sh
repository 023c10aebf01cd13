#!/bin/sh
# Runs a command on a private Xvfb display (inside a chroot too, where xvfb-run's xauth may be missing).
Xvfb -displayfd 3 -screen 0 1280x900x24 -nolisten tcp 3>"${TMPDIR:-/tmp}/uprez-xvfb-display.$$" 2>/dev/null &
XVFB=$!
for _ in $(seq 100); do [ -s "${TMPDIR:-/tmp}/uprez-xvfb-display.$$" ] && break; sleep 0.1; done
DISPLAY=":$(cat "${TMPDIR:-/tmp}/uprez-xvfb-display.$$")"
export DISPLAY
rm -f "${TMPDIR:-/tmp}/uprez-xvfb-display.$$"
"$@"
STATUS=$?
kill "$XVFB"
exit "$STATUS"
