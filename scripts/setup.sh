#!/usr/bin/env bash
# Installs and starts what the test suite talks to. Called by scripts/test-all.sh (so the README's test
# command works on a fresh machine) and by .ci/run. Idempotent: does nothing that is already done.
#
# * redis-server (tests start private servers on free ports; `ringwire bench` and the criterion benches
#   use the one on 127.0.0.1:6379, started here if it does not answer).
# * RabbitMQ (tests/amqp.rs, the amqp conformance suite and the `amqp` bench row use the broker on
#   127.0.0.1:5672, guest/guest; tests make private vhosts with rabbitmqctl). Started here if
#   `rabbitmqctl status` fails.
# * Node.js 20+ with npm (tests/websocket.rs talks to Node's built-in WebSocket client; cli/tests/hub_js.rs
#   runs the hub's JavaScript client in Node).
# * Chromium, Debian's (cli/tests/hub_js.rs drives the hub's chat page in it, headless, through
#   playwright-core with executablePath /usr/bin/chromium: nothing downloads a browser).
# * tests/js/node_modules: `npm ci` of tests/js/package-lock.json (playwright-core, ws; socket.io and
#   socket.io-client for the hub benchmark), redone only when the lock file changed since the last install
#   (a stamp file in node_modules holds its checksum).
# * cargo-fuzz (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=
apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "setup: $* is needed by the test suite; install it (as root: apt-get install $*)" >&2
        exit 1
    fi
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    echo "setup: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v redis-server >/dev/null || apt_install redis-server
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm
command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
[ -x /usr/bin/chromium ] || apt_install chromium

# The JavaScript test packages, from the lock file (no browser download: the tests use Debian's chromium).
js_stamp=tests/js/node_modules/.ringwire-lock.sha256
js_lock_sum=$(sha256sum tests/js/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$js_stamp" 2>/dev/null)" != "$js_lock_sum" ]; then
    echo "setup: npm ci in tests/js"
    (cd tests/js && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$js_lock_sum" > "$js_stamp"
fi

# The machine's Redis: started the way this machine kind starts it, if it is not answering.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "setup: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp --logfile /tmp/ringwire-redis.log || echo "setup: could not start redis-server" >&2
fi

# The machine's RabbitMQ: started detached if it does not answer, then waited for (the broker takes a few
# seconds to boot).
if ! rabbitmqctl status >/dev/null 2>&1; then
    echo "setup: starting rabbitmq-server"
    rabbitmq-server -detached || echo "setup: could not start rabbitmq-server" >&2
fi
rabbitmqctl await_startup --timeout 120 >/dev/null || echo "setup: RabbitMQ did not start; the amqp tests will fail" >&2

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
