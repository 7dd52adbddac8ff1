#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium, for the browser tests (tests/browser).
# Idempotent and quick when it is already there. Installs it with apt-get otherwise (as root, or through sudo).
# Never downloads a browser build of its own: `playwright install` is not used anywhere.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

fail() {
    echo "ensure_chromium: $*" >&2
    echo "ensure_chromium: the browser tests need Debian's chromium at $CHROMIUM." >&2
    echo "ensure_chromium: install it by hand with: sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$CHROMIUM is missing and there is no apt-get on this machine."

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        fail "$CHROMIUM is missing; installing it needs root, and this user is not root and has no password-less sudo."
    fi
fi

echo "ensure_chromium: $CHROMIUM is missing; installing Debian's chromium with apt-get (a minute or two)..."
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t ensure-chromium.XXXXXX.log)"
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1; then
    tail -20 "$log" >&2
    fail "apt-get update failed (full log: $log)."
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        chromium fonts-liberation >>"$log" 2>&1; then
    tail -20 "$log" >&2
    fail "apt-get install chromium failed (full log: $log)."
fi
[[ -x "$CHROMIUM" ]] || fail "apt-get installed chromium, but $CHROMIUM is still missing (full log: $log)."
rm -f "$log"
echo "ensure_chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)."
