#!/usr/bin/env bash
# Installs Prometheus (`prometheus` and `promtool`) from the distribution's package when either is
# missing, for the alert-rule tests and the end-to-end test against a real Prometheus. Used by
# `make test` and .ci/run; does nothing when both are already on PATH.
#
# The tests run their own Prometheus on a free port; the packaged service is kept from starting
# (policy-rc.d) and disabled, so nothing is left listening on 9090.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "install-prometheus: $*" >&2
    echo "install-prometheus: install Prometheus yourself (https://prometheus.io/download/) so that" \
         "'prometheus' and 'promtool' are on PATH, then run this again" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "prometheus/promtool are missing and there is no apt-get to install them"
if [ "$(id -u)" -ne 0 ]; then
    fail "prometheus/promtool are missing and installing the 'prometheus' package needs root (try: sudo $0)"
fi

export DEBIAN_FRONTEND=noninteractive

# Keep the package's service from starting during the installation (invoke-rc.d and
# deb-systemd-invoke both honour policy-rc.d); leave an existing policy alone.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install-prometheus: installing the 'prometheus' package" >&2
apt-get update -qq || fail "apt-get update failed"
apt-get install -y -qq --no-install-recommends prometheus >/dev/null || fail "apt-get install prometheus failed"

# Not a service on this machine: do not start it at boot either, and stop it if something started it.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then update-rc.d prometheus disable >/dev/null 2>&1 || true; fi
fi

command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
    || fail "the 'prometheus' package is installed but prometheus/promtool are still not on PATH"
echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1)" >&2
