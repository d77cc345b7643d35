#!/usr/bin/env bash
# The Debian packages the test suite and benchmarks use.
#   redis-server, redis-sentinel, redis-tools: real Redis servers, clusters and Sentinels
#   openssl: certificates for the TLS Redis tests
#   tmux: drives the terminal app as a person would, in the end-to-end terminal test
#   wrk: the load generator of bench/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh redis-server redis-sentinel redis-tools openssl tmux wrk
# Debian starts a system Redis on port 6379 when it installs the package; the tests start
# their own servers on free ports and need nothing running.
