#!/usr/bin/env bash
# Installs Prometheus (`prometheus` and `promtool`) from the distribution's package when either is
# missing, for the alert-rule tests and the end-to-end test against a real Prometheus. Used by
# `make test` and .ci/run; does nothing when both are already on PATH.
#
# The tests run their own Prometheus on a free port; the packaged service is kept from starting
# (policy-rc.d) and disabled, so nothing is left listening on 9090.
set -euo pipefail

found() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }
if found; then
    exit 0
fi
NAME=install-prometheus
HINT="install Prometheus yourself (https://prometheus.io/download/) so that 'prometheus' and 'promtool' are on PATH"
source "$(dirname "$0")/apt-install.sh"
apt_install "prometheus/promtool" prometheus

# Not a service on this machine: do not start it at boot either, and stop it if something started it.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then update-rc.d prometheus disable >/dev/null 2>&1 || true; fi
fi

found || fail "the 'prometheus' package is installed but prometheus/promtool are still not on PATH"
echo "$NAME: $(prometheus --version 2>&1 | head -n 1)" >&2
