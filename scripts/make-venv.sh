#!/usr/bin/env bash
# Create the project's virtualenv, installing Debian's venv support first if it is missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if [ -x "$venv/bin/python" ]; then exit 0; fi
if ! "$python" -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  scripts/apt-install.sh python3-venv
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
