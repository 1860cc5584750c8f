#!/usr/bin/env bash
# Installs Debian's Chromium when it is missing, for the review console's browser test (driven by Playwright
# with this browser: Playwright's own browser download cannot run here). Used by `make test` and .ci/run;
# does nothing when chromium is already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
NAME=install-chromium
HINT="install Chromium yourself (Debian: the 'chromium' package) so that 'chromium' is on PATH"
source "$(dirname "$0")/apt-install.sh"
apt_install "chromium" chromium fonts-dejavu-core
command -v chromium >/dev/null 2>&1 || fail "the 'chromium' package is installed but chromium is still not on PATH"
echo "$NAME: $(chromium --version 2>/dev/null | head -n 1)" >&2
