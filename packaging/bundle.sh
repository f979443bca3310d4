#!/bin/sh
# packaging/bundle.sh ARCH WHEEL OUTDIR: the offline bundle OUTDIR/dnsfw-VERSION-linux-ARCH.tar.gz
# (`make dist` runs it for x86_64 and aarch64). It holds the dnsfw wheel and every wheel it
# needs at run time for Linux on ARCH (manylinux_2_28: glibc 2.28 or newer, so Amazon Linux
# 2023, Debian 11+, Ubuntu 20.04+), for each CPython of PYTHONS (default 3.11 3.12 3.13), plus
# pip's wheel (install.sh runs pip from it), the units, sysusers and logrotate files of
# systemd/, the default Corefile, the DoH/DoT list, and install.sh. The wheels come from pip
# download with --platform/--only-binary, so one machine builds both architectures.
# Environment: PYTHON (the Python whose pip downloads; default python3), PYTHONS.
set -eu

arch=$1 wheel=$2 out=$3
python=${PYTHON:-python3}
pythons=${PYTHONS:-3.11 3.12 3.13}
here=$(cd "$(dirname "$0")/.." && pwd)

version=$(basename "$wheel" | cut -d- -f2)
build=$("$python" -c 'import sys, zipfile; exec(zipfile.ZipFile(sys.argv[1]).read("proxy/_build.py")); print(BUILD)' "$wheel")
[ -n "$build" ] || { echo "bundle.sh: $wheel has no proxy/_build.py" >&2; exit 1; }
name=dnsfw-$version-linux-$arch
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/$name

mkdir -p "$root/wheels" "$root/systemd" "$root/lists"
for py in $pythons; do
    tag=$(echo "$py" | tr -d .)
    "$python" -m pip download --quiet --disable-pip-version-check --dest "$root/wheels" \
        --only-binary=:all: --implementation cp --python-version "$py" \
        --abi "cp$tag" --abi abi3 --abi none --platform "manylinux_2_28_$arch" \
        "$wheel" pip
done
cp "$here/packaging/install.sh" "$root/install.sh"
chmod 0755 "$root/install.sh"
cp "$here/packaging/Corefile" "$root/Corefile"
cp "$here"/systemd/* "$root/systemd/"
cp "$here/plugins/firewall/data/doh-dot-endpoints.txt" "$root/lists/"
echo "$version" >"$root/VERSION"
echo "$build" >"$root/BUILD"
# the same bytes for the same inputs: sorted names, one owner, the commit's time
mtime=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)
mkdir -p "$out"
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$name" \
    | gzip -n >"$out/$name.tar.gz"
echo "$out/$name.tar.gz"
