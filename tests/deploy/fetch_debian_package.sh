#!/usr/bin/env bash
# Unpacks a Debian package's files under DEST without installing it: no root, no change to the
# system. `apt-get download` fetches the .deb as any user (it needs the machine's package lists),
# `dpkg-deb -x` unpacks it. Used for prometheus + promtool (DEST/usr/bin) by `make tools` and by
# tests/deploy/conftest.py.
#   usage: fetch_debian_package.sh PACKAGE DEST
set -euo pipefail
package=${1:?usage: fetch_debian_package.sh PACKAGE DEST}
dest=${2:?usage: fetch_debian_package.sh PACKAGE DEST}

mkdir -p "$(dirname "$dest")"
work=$(mktemp -d "$(dirname "$dest")/.fetch-$package.XXXXXX")
trap 'rm -rf "$work"' EXIT

download() { (cd "$work" && apt-get download -q "$package") >"$work/apt.log" 2>&1; }
if ! download && [ "$(id -u)" = 0 ]; then
    # As root only: the package lists may be missing on a fresh machine. `apt-get update` refreshes
    # apt's lists and installs nothing.
    echo "apt-get download $package failed; refreshing apt's package lists (apt-get update) and retrying" >&2
    apt-get update -q >"$work/update.log" 2>&1 || cat "$work/update.log" >&2
    download || true
fi
if ! ls "$work"/*.deb >/dev/null 2>&1; then
    echo "could not download Debian's $package package into $dest:" >&2
    sed 's/^/  /' "$work/apt.log" >&2
    echo "  (apt-get download needs the machine's package lists: run \`apt-get update\` once as root," >&2
    echo "   or unpack $package's files under $dest yourself; nothing is installed system-wide)" >&2
    exit 1
fi
dpkg-deb -x "$work"/*.deb "$work/root"
rm -rf "$dest"
mv "$work/root" "$dest"
echo "unpacked Debian's $package $(dpkg-deb -f "$work"/*.deb Version) under $dest"
