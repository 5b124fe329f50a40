#!/usr/bin/env bash
# Prints the Debian archive debootstrap should use: $DEBIAN_MIRROR, else the first bookworm (non-security)
# archive in the host's apt sources (deb822 *.sources or one-line *.list). No address is built in: with
# neither, it exits 1 with a message, so a machine is never sent to a mirror nobody chose.
#   APT_DIR  where the apt sources live (/etc/apt; tests point it elsewhere)
set -euo pipefail

APT_DIR=${APT_DIR:-/etc/apt}

if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    exit 0
fi
for f in "$APT_DIR"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u !~ /security/ { print u; exit }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; exit 0; fi
done
for f in "$APT_DIR"/sources.list "$APT_DIR"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i+1) == "bookworm") { print $i; exit } } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; exit 0; fi
done
echo "no Debian mirror: the apt sources in $APT_DIR name no bookworm archive; set DEBIAN_MIRROR (e.g. DEBIAN_MIRROR=http://<your mirror>/debian)" >&2
exit 1
