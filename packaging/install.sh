#!/bin/sh
# Install or upgrade dnsfw from this offline bundle: no network, no package index.
#
#   tar xzf dnsfw-VERSION-linux-ARCH.tar.gz && sudo dnsfw-VERSION-linux-ARCH/install.sh
#
# Layout (docs/ec2.md): each version in its own virtualenv, PREFIX/versions/VERSION-BUILD,
# made with `pip --no-index` from the wheels in this bundle; PREFIX/current links to the one in
# use and PREFIX/bin to current/bin, so the unit's /opt/dnsfw/bin/dnsfw is always the current
# version. Configuration in /etc/dnsfw, state in /var/lib/dnsfw, logs in /var/log/dnsfw.
#
# Upgrade: the new version is installed beside the old one and runs `dnsfw check` on the
# existing Corefile (as the dnsfw user, as the service will). Only if that passes does
# `current` switch (one rename) and a running dnsfw.service restart; otherwise the new
# version is removed, the old one keeps running, and the check's error is printed (exit 1).
# The Corefile, lists and state are never overwritten: a file of this bundle that differs
# from an installed one under /etc is written beside it as FILE.new. The version before is
# kept for a rollback (`ln -sfn versions/OLD PREFIX/current`); older ones are removed.
#
# Settings (environment): PYTHON (default: the first of python3.11, python3.12, python3.13,
# python3 that is 3.11 or newer and for which this bundle has wheels), PREFIX (/opt/dnsfw),
# DESTDIR (install under this root instead of /, for tests and images: the virtualenv is made
# at its path under DESTDIR; no user is created, no ownership changed), SYSTEMCTL (systemctl;
# empty: no daemon-reload or restart), ENABLE=1 (enable and start dnsfw.service on a first
# install; by default it is left for you to start after editing the Corefile).
set -eu
# whatever root's umask: the service's user reads the virtualenv and the files in /etc
umask 022

BUNDLE=$(cd "$(dirname "$0")" && pwd)
VERSION=$(cat "$BUNDLE/VERSION")
BUILD=$(cat "$BUNDLE/BUILD")
PREFIX=${PREFIX:-/opt/dnsfw}
DESTDIR=${DESTDIR:-}
SYSTEMCTL=${SYSTEMCTL-systemctl}
ENABLE=${ENABLE:-0}
SERVICE=dnsfw.service

OPT=$DESTDIR$PREFIX
ETC=$DESTDIR/etc/dnsfw
STATE=$DESTDIR/var/lib/dnsfw
LOGS=$DESTDIR/var/log/dnsfw
NAME=$VERSION-$BUILD
NEW=$OPT/versions/$NAME

say() { echo "dnsfw install: $*" >&2; }
die() { say "$*"; exit 1; }

# the host's pip configuration (an index, find-links, constraints) must not change what is
# installed: only this bundle's wheels are
for var in $(env | sed -n 's/^\(PIP_[A-Z0-9_]*\)=.*/\1/p'); do unset "$var"; done
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

find_python() {
    for py in ${PYTHON:-python3.11 python3.12 python3.13 python3}; do
        command -v "$py" >/dev/null 2>&1 || continue
        tag=$("$py" -c 'import sys; v = sys.version_info; print(f"cp{v[0]}{v[1]}" if v >= (3, 11) else "")')
        [ -n "$tag" ] || continue
        # uvloop has no pure-Python wheel: it says whether this bundle fits the interpreter
        if ls "$BUNDLE"/wheels/uvloop-*-"$tag"-*.whl >/dev/null 2>&1; then
            echo "$py"
            return
        fi
        say "$py is $tag: this bundle has no wheels for it"
    done
    die "no Python 3.11+ that this bundle has wheels for (install python3.11, or set PYTHON)"
}

# users, services and ownership belong to the real root only
on_host() { [ -z "$DESTDIR" ]; }
# systemctl only where systemd runs (not in a chroot, an image build or under DESTDIR); a
# SYSTEMCTL of your own (a test's) always runs
use_systemctl() {
    [ -n "$SYSTEMCTL" ] || return 1
    [ "$SYSTEMCTL" = systemctl ] || return 0
    on_host && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# copy SRC to DST unless DST exists; a DST that differs gets SRC beside it as DST.new
install_config() {
    mode=$1 src=$2 dst=$3
    if [ ! -e "$dst" ]; then
        install -D -m "$mode" "$src" "$dst"
    elif ! cmp -s "$src" "$dst"; then
        install -m "$mode" "$src" "$dst.new"
        say "kept your $dst; this version's is $dst.new"
    fi
}

make_venv() {
    py=$1
    rm -rf "$NEW"
    mkdir -p "$OPT/versions"
    # pip runs from its wheel in the bundle: the venv needs no ensurepip (Debian's python3-venv)
    # and keeps no pip of its own
    "$py" -m venv --without-pip "$NEW"
    pip=$(ls "$BUNDLE"/wheels/pip-*.whl)
    if ! "$NEW/bin/python" "$pip/pip" install --quiet --no-index --find-links "$BUNDLE/wheels" \
        "dnsfw==$VERSION" >"$OPT/versions/.pip.log" 2>&1; then
        cat "$OPT/versions/.pip.log" >&2
        rm -rf "$NEW"
        die "could not install dnsfw $VERSION from $BUNDLE/wheels"
    fi
    rm -f "$OPT/versions/.pip.log"
}

# `dnsfw check` of the existing Corefile with the new version, as the service's user
check_new() {
    conf=$ETC/Corefile
    if on_host && id dnsfw >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
        runuser -u dnsfw -- "$NEW/bin/dnsfw" check -conf "$conf" >"$NEW.check" 2>&1
    else
        "$NEW/bin/dnsfw" check -conf "$conf" >"$NEW.check" 2>&1
    fi
}

# what `dnsfw check` reads: the Corefile (the bundle's on a first install), lists, directories
install_config_files() {
    install -d -m 0755 "$ETC" "$ETC/lists"
    install_config 0644 "$BUNDLE/Corefile" "$ETC/Corefile"
    install_config 0644 "$BUNDLE/lists/doh-dot-endpoints.txt" "$ETC/lists/doh-dot-endpoints.txt"
    install_config 0644 "$BUNDLE/systemd/dnsfw-egress.nft" "$ETC/dnsfw-egress.nft"
    install -D -m 0644 "$BUNDLE/systemd/dnsfw.sysusers" "$DESTDIR/etc/sysusers.d/dnsfw.conf"
    install -d -m 0750 "$STATE" "$STATE/lists" "$LOGS"
    if on_host; then
        # without systemd (an image), the user must exist already (the Dockerfile's useradd)
        if command -v systemd-sysusers >/dev/null 2>&1; then
            systemd-sysusers /etc/sysusers.d/dnsfw.conf
        fi
        id dnsfw >/dev/null 2>&1 || die "no user dnsfw, and no systemd-sysusers to create it"
        chown dnsfw:dnsfw "$STATE" "$STATE/lists" "$LOGS"
    fi
}

# the units of the version that passed its check
install_units() {
    # units and the user are dnsfw's, not yours: replaced (override with `systemctl edit`)
    install -D -m 0644 "$BUNDLE/systemd/dnsfw.service" "$DESTDIR/etc/systemd/system/dnsfw.service"
    install -D -m 0644 "$BUNDLE/systemd/dnsfw.socket" "$DESTDIR/etc/systemd/system/dnsfw.socket"
    install_config 0644 "$BUNDLE/systemd/dnsfw.logrotate" "$DESTDIR/etc/logrotate.d/dnsfw"
}

switch_to_new() {
    previous=$(readlink "$OPT/current" 2>/dev/null || true)
    ln -sfn "versions/$NAME" "$OPT/current.new"
    mv -fT "$OPT/current.new" "$OPT/current"  # rename(2): the link changes in one step
    [ -L "$OPT/bin" ] || ln -sfn current/bin "$OPT/bin"
    # keep the version before this one (a rollback), remove the rest
    for dir in "$OPT"/versions/*; do
        [ -d "$dir" ] || continue
        case "versions/${dir##*/}" in "versions/$NAME" | "$previous") ;; *) rm -rf "$dir" "$dir.check" ;; esac
    done
}

main() {
    if [ -e "$OPT/pyvenv.cfg" ]; then
        die "$OPT is a virtualenv from a pip install: move it away (mv $OPT $OPT.old), run this again, then remove it"
    fi
    py=$(find_python)
    current=$(readlink "$OPT/current" 2>/dev/null || true)
    if [ "$current" = "versions/$NAME" ] && [ -x "$NEW/bin/dnsfw" ]; then
        say "dnsfw $NAME is installed already; refreshing its files"
    else
        say "installing dnsfw $VERSION (build $BUILD) with $py into $NEW"
        make_venv "$py"
    fi
    install_config_files
    if ! check_new; then
        cat "$NEW.check" >&2
        if [ "$current" != "versions/$NAME" ]; then
            rm -rf "$NEW"
        fi
        rm -f "$NEW.check"
        kept="the version in use, ${current#versions/}, stays in place (and running if it was)"
        [ -n "$current" ] || kept="nothing else was changed"
        die "dnsfw $VERSION was not installed: \`dnsfw check\` fails on $ETC/Corefile (above);" \
            "$kept. Fix the Corefile, then run install.sh again."
    fi
    rm -f "$NEW.check"
    install_units
    switch_to_new
    if ! use_systemctl; then
        say "installed dnsfw $NAME in $OPT (systemd not used here: start dnsfw yourself)"
        return
    fi
    "$SYSTEMCTL" daemon-reload
    if "$SYSTEMCTL" is-active --quiet "$SERVICE"; then
        "$SYSTEMCTL" restart "$SERVICE"
        say "installed dnsfw $NAME and restarted $SERVICE (it passed \`dnsfw check\` first)"
    elif [ "$ENABLE" = 1 ]; then
        "$SYSTEMCTL" enable --now "$SERVICE"
        say "installed dnsfw $NAME; $SERVICE enabled and started"
    else
        say "installed dnsfw $NAME; edit $ETC/Corefile, then: systemctl enable --now $SERVICE"
    fi
}

main
