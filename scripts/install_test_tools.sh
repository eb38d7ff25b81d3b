#!/usr/bin/env bash
# Node.js and a system Chromium for the tests of the runtimes apps embed, from apt-get when
# they are missing (as root, or with sudo). Never downloads a browser build of its own.
set -uo pipefail
missing=()
command -v node >/dev/null || missing+=(nodejs npm)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
    || command -v google-chrome >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
if ! command -v apt-get >/dev/null; then
    echo "install ${missing[*]} with your package manager: the embedded-runtime tests need them" >&2
    exit 1
fi
echo "installing ${missing[*]} with apt-get for the embedded-runtime tests" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "${missing[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
