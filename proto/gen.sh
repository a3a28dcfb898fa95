#!/usr/bin/env bash
# Regenerates proto/rpcpb from goray.proto and proto/clientpb from
# client.proto (needs protoc, protoc-gen-go, protoc-gen-go-grpc on PATH).
# The generated code is committed.
set -euo pipefail
cd "$(dirname "$0")"
protoc -I . --go_out=rpcpb --go_opt=paths=source_relative \
  --go-grpc_out=rpcpb --go-grpc_opt=paths=source_relative goray.proto
protoc -I . --go_out=clientpb --go_opt=paths=source_relative \
  --go-grpc_out=clientpb --go-grpc_opt=paths=source_relative client.proto
