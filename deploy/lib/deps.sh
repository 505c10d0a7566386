# Installs the Debian packages hookd needs, only those missing; sourced by
# deploy/local/up and tests/run. Usage: hookd_install_deps build|test
# (plus HOOKD_EXTRA_PACKAGES, space-separated, when set)
# Idempotent: runs apt-get update + install only when something is missing.

HOOKD_BUILD_PACKAGES="gcc make cmake pkg-config librdkafka-dev libpq-dev libcurl4-openssl-dev
  libjson-c-dev libevent-dev libssl-dev ca-certificates"
HOOKD_RUN_PACKAGES="postgresql postgresql-contrib kcat curl python3 util-linux"
HOOKD_TEST_PACKAGES="libcmocka-dev python3-pytest python3-psycopg2 python3-confluent-kafka
  python3-yaml python3-h2 openssl prometheus docker-compose clang libclang-rt-14-dev"

hookd_install_deps() {
    local want="$HOOKD_BUILD_PACKAGES $HOOKD_RUN_PACKAGES"
    [ "${1:-build}" = test ] && want="$want $HOOKD_TEST_PACKAGES"
    want="$want ${HOOKD_EXTRA_PACKAGES:-}" # a caller's own (tests/bench/run: nodejs npm)
    local missing="" p
    for p in $want; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    # Packages must not start system services (prometheus, postgresql) here.
    local policy_added=""
    if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$sudo" ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
    local rc=$?
    [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
    return $rc
}
