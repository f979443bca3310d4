#!/bin/sh
# packaging/deb.sh BUNDLE OUTDIR: OUTDIR/dnsfw_VERSION_ARCH.deb (`make deb`), with dpkg-deb.
# The virtualenv is made from the bundle's wheels (no network) and laid out at its final path:
# pip runs in a staging copy, then the staging path is replaced by /opt/dnsfw in the scripts'
# shebangs and activate files, and the venv's python is Debian's /usr/bin/python3.11 (so the
# package depends on python3.11 and the wheels are its cp311 ones). The architecture is the
# bundle's, which must be this machine's (pip checks the wheels against the Python running it).
# Environment: PYTHON (a CPython 3.11 to run pip; default python3.11).
set -eu

bundle=$1 out=$2
python=${PYTHON:-python3.11}
here=$(cd "$(dirname "$0")" && pwd)
name=$(basename "$bundle" .tar.gz)
version=$(echo "$name" | cut -d- -f2)
case "$name" in
*-x86_64) arch=amd64 ;;
*-aarch64) arch=arm64 ;;
*) echo "deb.sh: unknown architecture in $name" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$bundle"
src=$work/$name
root=$work/root
venv=$root/opt/dnsfw

"$python" -m venv --without-pip "$venv"
pip=$(ls "$src"/wheels/pip-*.whl)
PIP_CONFIG_FILE=/dev/null "$venv/bin/python" "$pip/pip" install --quiet --no-index --no-compile \
    --disable-pip-version-check --find-links "$src/wheels" "dnsfw==$version"
rm -f "$venv/bin/Activate.ps1"
# as dh_strip does: the wheels' extension modules keep their symbols
find "$venv" -name '*.so' -exec strip --strip-unneeded --remove-section=.comment \
    --remove-section=.note {} +
# the staging path in shebangs and activate scripts becomes the installed one
grep -rlF "$venv" "$venv/bin" | xargs sed -i "s|$venv|/opt/dnsfw|g"
for link in python python3 python3.11; do ln -sfn /usr/bin/python3.11 "$venv/bin/$link"; done
printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n' >"$venv/pyvenv.cfg"
if grep -rqF "$work" "$root"; then
    echo "deb.sh: the staging path is left in:" >&2
    grep -rlF "$work" "$root" >&2
    exit 1
fi

install -d "$root/usr/bin"
ln -s /opt/dnsfw/bin/dnsfw "$root/usr/bin/dnsfw"
install -D -m 0644 "$src/systemd/dnsfw.service" "$root/lib/systemd/system/dnsfw.service"
install -D -m 0644 "$src/systemd/dnsfw.socket" "$root/lib/systemd/system/dnsfw.socket"
install -D -m 0644 "$src/systemd/dnsfw.sysusers" "$root/usr/lib/sysusers.d/dnsfw.conf"
install -D -m 0644 "$src/systemd/dnsfw.logrotate" "$root/etc/logrotate.d/dnsfw"
install -D -m 0644 "$src/Corefile" "$root/etc/dnsfw/Corefile"
install -D -m 0644 "$src/lists/doh-dot-endpoints.txt" "$root/etc/dnsfw/lists/doh-dot-endpoints.txt"
install -D -m 0644 "$src/systemd/dnsfw-egress.nft" "$root/etc/dnsfw/dnsfw-egress.nft"
doc=$root/usr/share/doc/dnsfw
install -D -m 0644 "$here/debian/copyright" "$doc/copyright"
date=$(date -R -d "@$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)")
printf 'dnsfw (%s) unstable; urgency=medium\n\n  * Build %s.\n\n -- dnsfw developers <dnsfw@example.org>  %s\n' \
    "$version" "$(cat "$src/BUILD")" "$date" | gzip -9n >"$doc/changelog.gz"
install -D -m 0644 "$here/debian/lintian-overrides" "$root/usr/share/lintian/overrides/dnsfw"

install -d "$root/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$here/debian/control" >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | sort | xargs md5sum) \
    >"$root/DEBIAN/md5sums"
mkdir -p "$out"
SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0) \
    dpkg-deb --root-owner-group -Zxz --build "$root" "$out/dnsfw_${version}_$arch.deb" >/dev/null
echo "$out/dnsfw_${version}_$arch.deb"
