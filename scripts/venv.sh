#!/usr/bin/env bash
# Create (or reuse) ./.venv with Python >= 3.12 and hierlm installed editable with its dev extra.
# Sourced by scripts/run-main and scripts/run-tests; safe to run repeatedly.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.hierlm-installed"
pick_python() {
  for cand in python3.12 python3.13 "$HOME/.pyenv/versions/3.12.1/bin/python" /root/.pyenv/versions/3.12.1/bin/python python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  echo "hierlm needs Python >= 3.12 (pyenv install 3.12, or put python3.12 on PATH)" >&2
  return 1
}
if [ ! -x "$venv/bin/python" ]; then
  py="$(pick_python)"
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  log="$venv/install.log"
  echo "Installing hierlm and its dependencies into $venv (log: $log) ..." >&2
  if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -e "$root[dev]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "Installation failed; see $log" >&2
    exit 1
  fi
  touch "$stamp"
fi
