#!/usr/bin/env bash
# Regenerates the committed Python code for proto/smallguard/v1/*.proto.
# Usage: scripts/generate-proto.sh [OUT_DIR]   (default: proto/, next to the sources)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/proto}
python=${PYTHON:-python3}
mkdir -p "$out/smallguard/v1"
"$python" -m grpc_tools.protoc \
  --proto_path="$root/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$root"/proto/smallguard/v1/*.proto
