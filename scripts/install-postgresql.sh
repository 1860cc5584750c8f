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
NAME=install-postgresql
HINT="install PostgreSQL's server (Debian: the 'postgresql' package) so that initdb is on PATH or in /usr/lib/postgresql/*/bin"
source "$(dirname "$0")/apt-install.sh"
apt_install "initdb" postgresql
found || fail "the 'postgresql' package is installed but initdb is still not found"
echo "$NAME: $(ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)" >&2
