#!/usr/bin/env bash
# Installs PostgreSQL's server programs (initdb, pg_ctl, postgres) from the distribution's package when they
# are missing, for the store tests: they start a private cluster of their own in a temporary folder on a free
# port (tests/postgres.py). Used by `make test` and .ci/run; does nothing when initdb is already there.
#
# The packaged cluster is kept from starting (policy-rc.d), so nothing is left listening on 5432.
set -euo pipefail

found() { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
if found; then
    exit 0
fi

fail() {
    echo "install-postgresql: $*" >&2
    echo "install-postgresql: install PostgreSQL's server (Debian: the 'postgresql' package) so that initdb is" \
         "on PATH or in /usr/lib/postgresql/*/bin, then run this again" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "initdb is missing and there is no apt-get to install it"
if [ "$(id -u)" -ne 0 ]; then
    fail "initdb is missing and installing the 'postgresql' package needs root (try: sudo $0)"
fi

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install-postgresql: installing the 'postgresql' package" >&2
apt-get update -qq || fail "apt-get update failed"
apt-get install -y -qq --no-install-recommends postgresql >/dev/null || fail "apt-get install postgresql failed"
found || fail "the 'postgresql' package is installed but initdb is still not found"
echo "install-postgresql: $(ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)" >&2
