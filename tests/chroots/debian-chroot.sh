# Sourced by tests/krita/run-krita.sh and tests/gimp/run-gimp.sh: a cached Debian chroot holding an editor
# version the host does not have, built once with debootstrap and reused by every later run.
#
#   chroot_setup SUITE          sets ROOT, takes the chroot's lock (fd 9) for the whole calling script,
#                               builds or completes the chroot; returns 77 when it cannot be made here
#   in_root CMD...              runs CMD inside the chroot, in a private mount namespace (no mount outlives it)
#
# SUITE is trixie (GIMP 3.0), sid (Krita 5.3 and GIMP 3.2) or experimental (Krita 6: sid plus Debian's
# experimental source, the editor installed with -t experimental). Each lives in /var/cache/uprez-SUITE
# ($UPREZ_CHROOT_DIR overrides the parent folder; $UPREZ_TRIXIE_DIR the trixie one, as before).
# $UPREZ_DEB_CACHE, when set, is a folder of downloaded .deb files shared by the builds (sid and experimental
# fetch mostly the same packages); without it every build downloads its own and cleans up after.

CHROOT_MIRROR=${UPREZ_DEBIAN_MIRROR:-${UPREZ_TRIXIE_MIRROR:-http://deb.debian.org/debian}}

# The mirror's Release files may carry a Valid-Until in this machine's past (a snapshot mirror, or a clock that
# is off): apt-get update would then refuse them, where debootstrap does not look.
chroot_say() { printf '[%s] %s\n' "${CHROOT_LOG_NAME:-chroot}" "$*" >&2; }

# What each suite holds. The marker file .uprez-ready records it: a cached chroot missing some is completed.
# trixie's list is the one run-in-trixie.sh always had, so its existing cache is reused as it is.
chroot_packages() {
    case "$1" in
        trixie) echo "gimp python3-gi xvfb" ;;
        # Krita 5.x's scripting needs PyQt5 (a Recommends, so named here); fonts for readable screenshots
        sid) echo "gimp python3-gi xvfb krita python3-pyqt5 fonts-dejavu-core" ;;
        # Krita 6's scripting needs PyQt6
        experimental) echo "xvfb fonts-dejavu-core krita python3-pyqt6" ;;
        *) return 1 ;;
    esac
}

chroot_dir() {
    if [ "$1" = trixie ] && [ -n "${UPREZ_TRIXIE_DIR:-}" ]; then echo "$UPREZ_TRIXIE_DIR"; return; fi
    echo "${UPREZ_CHROOT_DIR:-/var/cache}/uprez-$1"
}

in_root() {
    if [ -n "${UPREZ_DEB_CACHE:-}" ] && [ -n "${CHROOT_BUILDING:-}" ]; then
        mkdir -p "$UPREZ_DEB_CACHE" "$ROOT/var/cache/apt/archives"
        unshare --mount --propagation private -- sh -c \
            'mount -t proc proc "$0/proc" && mount --bind "$1" "$0/var/cache/apt/archives" && shift && exec chroot "$@"' \
            "$ROOT" "$UPREZ_DEB_CACHE" "$ROOT" "$@"
    else
        unshare --mount --propagation private -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$@"' \
            "$ROOT" "$ROOT" "$@"
    fi
}

chroot_apt_install() {  # SUITE: the suite's packages, from experimental where that is the suite
    local suite=$1 packages target=""
    packages=$(chroot_packages "$suite")
    if [ "$suite" = experimental ]; then target="-t experimental"; fi
    # shellcheck disable=SC2086
    CHROOT_BUILDING=1 in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        $target $packages >&2
    if [ -z "${UPREZ_DEB_CACHE:-}" ]; then in_root apt-get clean; fi
}

chroot_build() {  # SUITE: debootstrap into ROOT.partial, install, then move into place (a kill leaves no half chroot)
    local suite=$1 final=$ROOT base=$1
    if [ "$suite" = experimental ]; then base=sid; fi
    ROOT="$final.partial"
    chroot_say "building the $suite chroot in $final (first run only)"
    rm -rf "$ROOT"
    local cache_opt=()
    if [ -n "${UPREZ_DEB_CACHE:-}" ]; then mkdir -p "$UPREZ_DEB_CACHE"; cache_opt=(--cache-dir="$UPREZ_DEB_CACHE"); fi
    debootstrap --variant=minbase "${cache_opt[@]}" "$base" "$ROOT" "$CHROOT_MIRROR" >&2
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    if [ "$suite" = experimental ]; then
        echo "deb $CHROOT_MIRROR experimental main" >"$ROOT/etc/apt/sources.list.d/experimental.list"
        CHROOT_BUILDING=1 in_root apt-get update -q -o Acquire::Check-Valid-Until=false >&2
    fi
    chroot_apt_install "$suite"
    chroot_packages "$suite" >"$ROOT/.uprez-ready"
    rm -rf "$final"
    mv "$ROOT" "$final"
    ROOT=$final
}

chroot_mirror_answers() {
    local base=$1
    if [ "$base" = experimental ]; then base=sid; fi
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=15).read(1)' \
        "$CHROOT_MIRROR/dists/$base/Release" 2>/dev/null
}

chroot_setup() {  # SUITE
    local suite=$1 wanted started
    started=$(date +%s)
    wanted=$(chroot_packages "$suite") || { chroot_say "unknown suite $suite"; return 2; }
    ROOT=$(chroot_dir "$suite")
    if [ "$(id -u)" != 0 ]; then chroot_say "skipped: needs root (debootstrap and chroot)"; return 77; fi
    if ! command -v debootstrap >/dev/null; then
        chroot_say "skipped: debootstrap is not installed (apt-get install -y debootstrap)"; return 77
    fi
    if ! unshare --mount --propagation private -- true 2>/dev/null; then
        chroot_say "skipped: cannot make a mount namespace here (unshare --mount needs CAP_SYS_ADMIN)"; return 77
    fi
    # One user at a time per chroot: runs share its editor profile and its /uprez-tests folder. Held until
    # the calling script exits (fd 9 stays open).
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    flock 9
    if [ -e "$ROOT/.uprez-ready" ] && [ "$(cat "$ROOT/.uprez-ready")" = "$wanted" ]; then
        chroot_say "reusing the $suite chroot in $ROOT"
    elif [ -e "$ROOT/.uprez-ready" ] && chroot_mirror_answers "$suite"; then
        chroot_say "adding packages to the cached $suite chroot: $wanted"
        CHROOT_BUILDING=1 in_root apt-get update -q -o Acquire::Check-Valid-Until=false >&2
        chroot_apt_install "$suite"
        echo "$wanted" >"$ROOT/.uprez-ready"
    elif chroot_mirror_answers "$suite"; then
        chroot_build "$suite"
        chroot_say "$suite chroot ready after $(($(date +%s) - started)) s ($(du -sh "$ROOT" | cut -f1) on disk)"
    else
        chroot_say "skipped: no cached $suite chroot in $ROOT and $CHROOT_MIRROR does not answer"
        return 77
    fi
}

# An X display number for an Xvfb inside a chroot. The chroot has its own /tmp, so Xvfb there cannot see the
# host's lock files, but X's abstract sockets are shared with the host (same network namespace): an Xvfb in the
# chroot could pick a number a host X server (another test, another person) already has, and its clients would
# then talk to that one. So the number is chosen here, on the host, and held by a host lock file until exit.
chroot_pick_display() {  # sets CHROOT_DISPLAY (a number); the caller removes /tmp/.X$CHROOT_DISPLAY-lock at exit
    local n
    for n in $(seq $((100 + $$ % 400)) 599) $(seq 100 599); do
        if [ ! -e "/tmp/.X$n-lock" ] && [ ! -e "/tmp/.X11-unix/X$n" ] && \
            ! grep -q "@/tmp/.X11-unix/X$n\$" /proc/net/unix 2>/dev/null && \
            (set -o noclobber; printf '%10d\n' $$ >"/tmp/.X$n-lock") 2>/dev/null; then
            CHROOT_DISPLAY=$n
            return 0
        fi
    done
    return 1
}
