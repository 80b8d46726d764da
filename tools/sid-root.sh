#!/usr/bin/env bash
# Runs the pytest suite on CPython 3.14 and 3.15 from Debian's unstable suite
# ("sid"), inside a Debian root made once with debootstrap and reused.
#
#   tools/sid-root.sh ensure                   # make the root unless it is there (the build needs it)
#   tools/sid-root.sh test VERSION WHEEL [PYTEST ARGS...]
#   tools/sid-root.sh shell VERSION            # a shell in the root, mounts and venv as for test
#   tools/sid-root.sh run VERSION COMMAND...   # a command there (in the repository's copy, the venv first on PATH)
#
# Why a root: Debian 12 has no 3.14/3.15 packages, and sid's need a newer C
# library than Debian 12's, so they cannot be installed on the machine itself.
# The wheel is built on the machine (PyO3 cross-compiles against the root's
# lib/python3.X, see the Makefile); only pytest runs inside.
#
# What it does:
# - makes the root at $AIOCOP_SID_ROOT (default /var/cache/aiocop-sid) unless
#   its stamp says it is complete with the packages below; a root missing
#   packages gets them with apt-get;
# - mounts /proc, /dev, /dev/pts and /dev/shm there and unmounts them on exit,
#   also when a test fails (trap);
# - copies the machine's pip.conf and CA certificates in, so pip there reaches
#   the same package index, and a copy of the repository (the root never sees
#   the machine's files, and `rm -rf` of the copy can go through no mount);
# - keeps a venv per Python version and requirements-dev.txt in the root's
#   /opt/aiocop-venvs, so a second run installs only the wheel.
# Runs hold a lock: two at once would unmount each other's /proc.
#
# Never `rm -rf` the root, nor anything in it, while something is mounted
# inside it (`findmnt | grep aiocop-sid`): rm goes through bind mounts.
set -euo pipefail

ROOT=${AIOCOP_SID_ROOT:-/var/cache/aiocop-sid}
LOCK=$ROOT.lock
STAMP=$ROOT/.aiocop-root-complete
# What debootstrap installs: the Pythons (python3.13: a target `python -m aiocop attach`
# must refuse, tests/test_attach.py), CA certificates for pip, and wrk for bench/sampling_coverage.py.
ROOT_PACKAGES="python3.13 python3.14 python3.14-dev python3.14-venv python3.15 python3.15-dev python3.15-venv ca-certificates wrk"
# What apt-get adds in the root, since debootstrap does not resolve alternative dependencies
# (chromium's dconf-service needs "default-dbus-session-bus | dbus-session-bus"): chromium, for
# tests/test_analyze_html.py, which CI must not skip.
APT_PACKAGES="chromium"
REPO=$(cd "$(dirname "$0")/.." && pwd)
# The repository's copy inside the root, one per checkout.
COPY=/work/$(printf %s "$REPO" | sha256sum | cut -c1-12)

die() {
    echo "tools/sid-root.sh: $*" >&2
    exit 2
}

mounted_inside() {
    findmnt -rn -o TARGET | grep -q "^$ROOT/"
}

debian_mirror() {
    # The first URIs line of the machine's deb822 sources, which CI's machine reaches.
    local mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    echo "${mirror:-http://deb.debian.org/debian}"
}

make_root() {
    mounted_inside && die "$ROOT has mounts inside it and no stamp: unmount them (findmnt) before it is made again"
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    # A root without a stamp is an interrupted debootstrap: start again.
    rm -rf --one-file-system "$ROOT"
    echo "tools/sid-root.sh: making a Debian sid root in $ROOT (a few minutes, once)" >&2
    debootstrap --variant=minbase --include="${ROOT_PACKAGES// /,}" sid "$ROOT" "$(debian_mirror)" >/dev/null
    echo "$ROOT_PACKAGES" >"$STAMP"
}

mount_all() {
    trap unmount_all EXIT
    mount -t proc proc "$ROOT/proc"
    mount --bind /dev "$ROOT/dev"
    mount --bind /dev/pts "$ROOT/dev/pts"
    mount --bind /dev/shm "$ROOT/dev/shm"
}

unmount_all() {
    local target
    for target in dev/shm dev/pts dev proc; do
        if findmnt -rn "$ROOT/$target" >/dev/null; then
            umount "$ROOT/$target" || umount -l "$ROOT/$target"
        fi
    done
}

add_missing_packages() {
    local package missing=""
    for package in $ROOT_PACKAGES $APT_PACKAGES; do
        grep -qw -- "$package" "$STAMP" || missing="$missing $package"
    done
    [ -z "$missing" ] && return
    # sid's Release files expire within days; a mirror a little behind is still fine here.
    in_root apt-get -o Acquire::Check-Valid-Until=false update -qq
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    echo "$(cat "$STAMP")$missing" >"$STAMP"
}

in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        ${CI:+CI=$CI} "$@"
}

copy_machine_config() {
    [ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}

copy_repository() {
    # Only what the tests read: no build output, venvs or git data.
    rm -rf --one-file-system "${ROOT:?}$COPY"
    mkdir -p "$ROOT$COPY"
    tar -C "$REPO" --exclude=./target --exclude='./.venv*' --exclude=./.git --exclude='*.bin' \
        --exclude=./fuzz/target --exclude=__pycache__ --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.pytest_cache -cf - . | tar -C "$ROOT$COPY" -xf -
}

# The root's venv for VERSION, with requirements-dev.txt installed once.
venv_for() {
    local version=$1 key venv
    key=$(sha256sum "$REPO/requirements-dev.txt" | cut -c1-12)
    venv=/opt/aiocop-venvs/$key-$version
    if [ ! -f "$ROOT$venv/.complete" ]; then
        rm -rf --one-file-system "${ROOT:?}$venv"
        in_root "python$version" -m venv "$venv"
        in_root "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$COPY/requirements-dev.txt"
        touch "$ROOT$venv/.complete"
    fi
    echo "$venv"
}

prepare() {
    exec 9>"$LOCK"
    flock 9
    [ -f "$STAMP" ] || make_root
    mount_all
    copy_machine_config
    add_missing_packages
    copy_repository
}

ensure() {
    exec 9>"$LOCK"
    flock 9
    [ -f "$STAMP" ] || make_root
    exec 9>&-
}

main() {
    local command=${1:-} version=${2:-}
    if [ "$command" = ensure ]; then
        ensure
        return
    fi
    [[ $version =~ ^3\.1[45]$ ]] || die "usage: tools/sid-root.sh test 3.14|3.15 WHEEL [pytest args] | shell 3.14|3.15"
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
    case $command in
    test)
        local wheel=${3:-}
        [ -f "$wheel" ] || die "no wheel at '$wheel'"
        shift 3
        prepare
        local venv
        venv=$(venv_for "$version")
        cp "$wheel" "$ROOT/tmp/"
        in_root "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall \
            "/tmp/$(basename "$wheel")"
        rm -f "$ROOT/tmp/$(basename "$wheel")"
        in_root sh -c 'cd "$0" && exec "$@"' "$COPY" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
        ;;
    shell | run)
        shift 2
        [ "$command" = shell ] && set -- bash
        prepare
        local venv
        venv=$(venv_for "$version")
        in_root sh -c 'cd "$0" && PATH="$1/bin:$PATH" && shift && exec "$@"' "$COPY" "$venv" "$@"
        ;;
    *) die "unknown command '$command'" ;;
    esac
}

main "$@"
