#!/usr/bin/env bash
# Installs Debian's Chromium when it is missing, for the review console's browser test (driven by Playwright
# with this browser: Playwright's own browser download cannot run here). Used by `make test` and .ci/run;
# does nothing when chromium is already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "install-chromium: $*" >&2
    echo "install-chromium: install Chromium yourself (Debian: the 'chromium' package) so that 'chromium' is on" \
         "PATH, then run this again" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "chromium is missing and there is no apt-get to install it"
if [ "$(id -u)" -ne 0 ]; then
    fail "chromium is missing and installing the 'chromium' package needs root (try: sudo $0)"
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-chromium: installing the 'chromium' package" >&2
apt-get update -qq || fail "apt-get update failed"
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
    || fail "apt-get install chromium failed"
command -v chromium >/dev/null 2>&1 || fail "the 'chromium' package is installed but chromium is still not on PATH"
echo "install-chromium: $(chromium --version 2>/dev/null | head -n 1)" >&2
