#!/usr/bin/env bash
# Regenerates the deepcopy functions of operator/api/v1 and the CRD
# manifests in operator/config/crd (one file per CRD) with controller-gen
# (sigs.k8s.io/controller-tools, installed into a cache outside the clone).
# Run it after changing a type; TestCRDsMatchTypes fails until you do.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=v0.23.0
BIN=${GORAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/goray}/controller-gen-$VERSION
if ! [ -x "$BIN/controller-gen" ]; then
	GOBIN=$BIN go install sigs.k8s.io/controller-tools/cmd/controller-gen@$VERSION
fi
cd "$ROOT"
"$BIN/controller-gen" object paths=./operator/api/...
"$BIN/controller-gen" crd:allowDangerousTypes=true,maxDescLen=0 paths=./operator/api/... output:crd:artifacts:config=operator/config/crd
# The Helm chart installs the same CRDs.
cp operator/config/crd/*.yaml operator/helm/goray-operator/crds/
