#!/usr/bin/env bash
# Install what syncstream needs on a Debian machine, then syncstream itself (editable).
#   bash scripts/setup.sh          the library and the `syncstream` command
#   bash scripts/setup.sh --test   plus what the test suite needs (and the docs site)
# Debian packages are installed with apt-get only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ "$with_tests" = 1 ]; then
    # a real RTSP server for the rtsp:// tests (GStreamer's, driven by Debian's python3)
    # a real OpenSSH server (and ssh-keygen, ssh-agent) for the remote-sender tests
    # a real browser (headless) and its driver for the web view tests
    for pkg in python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly openssl \
        openssh-server chromium chromium-driver; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
fi
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

extras=""
[ "$with_tests" = 1 ] && extras="[test,cluster,docs]"
# compat: the editable install puts this folder on sys.path (a .pth line) instead of an
# import hook, so type checkers such as mypy find syncstream from any other project too
python3 -m pip install -q --disable-pip-version-check -e ".${extras}" \
    --config-settings editable_mode=compat
