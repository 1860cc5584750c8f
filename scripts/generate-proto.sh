#!/usr/bin/env bash
# Regenerates the committed Python code for proto/smallguard/v1/*.proto (and server/bundle/onnx_graph.proto).
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
# The server's private schema of the ONNX fields it rewrites (server/bundle/onnx_graph.proto), beside it.
"$python" -m grpc_tools.protoc \
  --proto_path="$root" \
  --python_out="$root" --pyi_out="$root" \
  "$root"/server/bundle/onnx_graph.proto
