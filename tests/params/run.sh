#!/bin/sh
# tests/params/run.sh — every example's parameter names and shapes, layer
# output shapes and total parameter count against a torch.nn twin written
# in tests/params/test_params.py. Needs Debian's python3-torch, so it runs
# /usr/bin/python3 (the python3 on PATH may have no torch).
set -u
cd "$(dirname "$0")/../.." || exit 1
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "params: /usr/bin/python3 cannot import torch (apt-get install python3-torch)"
    echo "params: 0 passed, 1 failed"
    exit 1
fi
exec /usr/bin/python3 tests/params/test_params.py
