#!/usr/bin/env bash
# Create .venv and install musc-online with its test tools. Used by the README and by CI.
# torch/torchvision are pinned first to the builds this workplace serves from local wheels
# (a CUDA build that also runs on the CPU); set MUSC_TORCH_SPEC to bring another build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ${MUSC_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q -e '.[dev]'
# GenICam cameras (PyGObject) only where its build libraries are installed (.ci/run installs them); elsewhere
# the camera tests that need it skip with the reason.
if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then
    .venv/bin/python -m pip install -q -e '.[genicam]'
else
    echo "GenICam cameras left out: apt-get install libgirepository1.0-dev libcairo2-dev pkg-config, then rerun"
fi
echo "musc-online installed in .venv"
