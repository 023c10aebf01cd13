#!/usr/bin/env bash
# Runs a command where a given Krita version is installed: the host's own Krita, or a cached Debian chroot.
#
#   tests/krita/run-krita.sh VERSION --build              build (or check) that version's chroot, print its version
#   tests/krita/run-krita.sh VERSION [--bind DIR]... -- COMMAND [ARG]...
#
# VERSION: host (the Krita installed here, 5.1 on Debian 12), sid (Krita 5.3) or experimental (Krita 6.0, Qt 6
# and PyQt6). In a chroot, each --bind DIR (and this checkout) is mounted at the same path inside, so the
# command's paths mean the same there; the network is the host's, so an engine on 127.0.0.1 answers. COMMAND runs
# with a clean environment: PATH, HOME, LANG, DISPLAY, PYTHONPATH and the UPREZ_*, XDG_*, QT_* and KRITA_* variables
# passed on.
# The first line on stderr names the Krita version. Exit status: COMMAND's, or 77 where the chroot cannot be made
# here (not root, no debootstrap, no mirror and no cache).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # debootstrap, chroot

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CHROOT_LOG_NAME=run-krita
# shellcheck source=../chroots/debian-chroot.sh
source "$REPO/tests/chroots/debian-chroot.sh"

VERSION=${1:?usage: run-krita.sh host|sid|experimental [--build | [--bind DIR]... -- COMMAND...]}
shift
BINDS=("$REPO")
BUILD_ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) BUILD_ONLY=1; shift ;;
        --bind) BINDS+=("$2"); shift 2 ;;
        --) shift; break ;;
        *) chroot_say "unknown option $1"; exit 2 ;;
    esac
done

passed_env() {  # NAME=VALUE lines of what COMMAND gets
    env | grep -E '^(UPREZ_|XDG_|QT_|KRITA_|PYTHONPATH=|DISPLAY=|HOME=|LANG=)' || true
}

# Krita's first start in a fresh profile unpacks and indexes its resources (about 70 s here); every test uses a
# fresh profile, so the unpacked resource folders are kept once per Krita version and copied into each new one.
DATA_HOME=${XDG_DATA_HOME:-${HOME:-/root}/.local/share}
seed_profile() {  # TEMPLATE: copy the kept resource folders into a profile that has none
    local app
    for app in krita kritarunner; do
        if [ -d "$1/$app" ] && [ ! -e "$DATA_HOME/$app/resourcecache.sqlite" ]; then
            mkdir -p "$DATA_HOME/$app"
            cp -a -n "$1/$app/." "$DATA_HOME/$app/"
        fi
    done
}
keep_profile() {  # TEMPLATE: keep what this run unpacked, for the next fresh profile (not its plug-ins or logs)
    local app
    for app in krita kritarunner; do
        if [ ! -d "$1/$app" ] && [ -e "$DATA_HOME/$app/resourcecache.sqlite" ] && mkdir -p "$1" 2>/dev/null; then
            rm -rf "$1/$app.partial"
            cp -a "$DATA_HOME/$app" "$1/$app.partial" && rm -rf "$1/$app.partial/pykrita" && mv "$1/$app.partial" "$1/$app"
        fi
    done
}

if [ "$VERSION" = host ]; then
    if ! command -v krita >/dev/null; then chroot_say "skipped: Krita is not installed (apt-get install -y krita)"; exit 77; fi
    KRITA_VERSION=$(dpkg-query -W -f '${Version}' krita 2>/dev/null || echo unknown)
    printf 'krita version: %s (host)\n' "$KRITA_VERSION" >&2
    [ -n "$BUILD_ONLY" ] && exit 0
    TEMPLATE="${UPREZ_CHROOT_DIR:-/var/cache}/uprez-krita-profile-host-${KRITA_VERSION//[^0-9A-Za-z.+-]/_}"
    seed_profile "$TEMPLATE"
    rc=0; "$@" || rc=$?
    keep_profile "$TEMPLATE"
    exit "$rc"
fi

rc=0; chroot_setup "$VERSION" || rc=$?
if [ "$rc" != 0 ]; then exit "$rc"; fi
printf 'krita version: %s (%s chroot)\n' "$(in_root dpkg-query -W -f '${Version}' krita)" "$VERSION" >&2
[ -n "$BUILD_ONLY" ] && exit 0
TEMPLATE="$ROOT/var/cache/uprez-krita-profile"  # inside the chroot: deleted with it
seed_profile "$TEMPLATE"

# Every bind at the same path inside; all in one private mount namespace, gone when the command ends.
MOUNTS=""
for dir in "${BINDS[@]}"; do
    mkdir -p "$dir" "$ROOT$dir"
    MOUNTS="$MOUNTS mount --bind '$dir' '$ROOT$dir' &&"
done
CHROOT_DISPLAY=""
chroot_pick_display || true
trap '[ -n "$CHROOT_DISPLAY" ] && rm -f "/tmp/.X$CHROOT_DISPLAY-lock"' EXIT
export UPREZ_XVFB_DISPLAY=$CHROOT_DISPLAY  # for with-xvfb.sh inside
mapfile -t ENVS < <(passed_env)
rc=0
unshare --mount --propagation private -- sh -c \
    "mount -t proc proc '$ROOT/proc' && mount --bind /dev '$ROOT/dev' && mount -t tmpfs tmpfs '$ROOT/dev/shm' && \
     $MOUNTS exec chroot '$ROOT' \"\$@\"" sh env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "${ENVS[@]}" "$@" \
    || rc=$?
keep_profile "$TEMPLATE"
exit "$rc"
