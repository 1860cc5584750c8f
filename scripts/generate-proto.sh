#!/usr/bin/env bash
# Regenerates the committed Python code for proto/smallguard/v1/*.proto (and server/bundle/onnx_graph.proto).
# Usage: scripts/generate-proto.sh [OUT_DIR]   (default: next to the sources)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/proto}
python=${PYTHON:-python3}
mkdir -p "$out/smallguard/v1"
"$python" -m grpc_tools.protoc \
  --proto_path="$root/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$root"/proto/smallguard/v1/*.proto
# The server's private schema of the ONNX fields it rewrites: beside it (server/bundle/), or under OUT_DIR.
graph_out=${1:-$root}
mkdir -p "$graph_out/server/bundle"
"$python" -m grpc_tools.protoc \
  --proto_path="$root" \
  --python_out="$graph_out" --pyi_out="$graph_out" \
  "$root"/server/bundle/onnx_graph.proto
