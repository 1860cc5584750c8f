# Sourced by the scripts/install-*.sh: installs Debian packages for the tests, without starting their
# services (policy-rc.d), or fails with what to do instead. Set NAME (for messages) and HINT first.

fail() {
    echo "$NAME: $*" >&2
    echo "$NAME: $HINT, then run this again" >&2
    exit 1
}

# apt_install WHAT PACKAGE...: WHAT says what is missing, for the messages.
apt_install() {
    local what=$1
    shift
    command -v apt-get >/dev/null 2>&1 || fail "$what is missing and there is no apt-get to install it"
    if [ "$(id -u)" -ne 0 ]; then
        fail "$what is missing and installing the '$1' package needs root (try: sudo $0)"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' services from starting during the installation (invoke-rc.d and deb-systemd-invoke
    # both honour policy-rc.d); leave an existing policy alone.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    echo "$NAME: installing $*" >&2
    local status=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } || status=$?
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    [ "$status" = 0 ] || fail "apt-get install $* failed"
}
