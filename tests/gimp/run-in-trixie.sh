#!/usr/bin/env bash
# GIMP 3.0 in Debian trixie: run-gimp.sh trixie (kept for the commands people and other scripts already use).
exec bash "$(dirname "${BASH_SOURCE[0]}")/run-gimp.sh" trixie "$@"
