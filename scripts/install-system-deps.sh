#!/usr/bin/env bash
# The Debian packages the test suite and benchmarks use.
#   wrk:  the load generator of bench/
#   tmux: drives the terminal app as a person would, in the end-to-end TUI test
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh wrk tmux
