#!/usr/bin/env bash
# The Python `eventsourcing` side of `factline-bench accounts`: installs the library into a local
# virtual environment (bench/eventsourcing/.venv) on first use, then runs bench.py with the
# arguments given and prints one JSON object on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import eventsourcing" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
fi
exec "$venv/bin/python" "$here/bench.py" "$@"
