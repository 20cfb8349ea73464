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
echo "musc-online installed in .venv"
