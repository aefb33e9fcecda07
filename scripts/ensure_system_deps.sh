#!/usr/bin/env bash
# Make sure the system packages ij-bridge needs are present:
#   - ImageJ 1.x (Debian package libij-java, /usr/share/java/ij.jar)
#   - Xvfb (virtual display for the ROI Manager and dialogs in headless runs)
#   - a Java runtime (pulled in by libij-java)
# As root, missing packages are installed with apt-get. Otherwise we print
# exactly what to install and fail.
set -euo pipefail
missing=()
[ -f /usr/share/java/ij.jar ] || [ -n "${IJ_BRIDGE_IMAGEJ:-}" ] || missing+=(libij-java)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ij-bridge: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "ij-bridge: missing system packages: ${missing[*]}" >&2
    echo "  install them with:  sudo apt-get install ${missing[*]}" >&2
    echo "  (or point IJ_BRIDGE_IMAGEJ at an ij.jar / Fiji.app, and install Xvfb for headless batch work)" >&2
    exit 1
fi
