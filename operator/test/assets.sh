#!/usr/bin/env bash
# Provides the API server binaries for the operator's envtest suites and
# prints the directory to use as KUBEBUILDER_ASSETS:
#
#   export KUBEBUILDER_ASSETS=$(bash operator/test/assets.sh)
#
# kube-apiserver is built from k8s.io/kubernetes by the small module in
# operator/test/apiserver (its go.mod pins every k8s.io staging module to the
# matching v0.31.x), then cached outside the clone under
#   ${GORAY_CACHE:-~/.cache/goray}/kube-apiserver-<version>/
# keyed by that module's go.mod and go.sum, so later runs reuse it. The first
# build takes about 10 minutes on 2 cores. etcd is Debian's etcd-server
# (3.4), installed with apt-get when missing. Progress goes to stderr; the
# only line on stdout is the directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MOD=$ROOT/apiserver
VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$MOD/go.mod")
[ -n "$VERSION" ] || { echo "assets.sh: no k8s.io/kubernetes version in $MOD/go.mod" >&2; exit 1; }
CACHE=${GORAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/goray}
DIR=$CACHE/kube-apiserver-$VERSION
MINOR=${VERSION#v1.}
MINOR=${MINOR%%.*}
KEY=$(cat "$MOD/go.mod" "$MOD/go.sum" | sha256sum | awk '{print $1}')

log() { echo "assets.sh: $*" >&2; }

if ! command -v etcd >/dev/null 2>&1 && ! [ -x /usr/bin/etcd ]; then
	log "installing Debian's etcd-server"
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
ETCD=$(command -v etcd || echo /usr/bin/etcd)

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9 # one build at a time, whoever asks

if ! [ -x "$DIR/kube-apiserver" ] || [ "$(cat "$DIR/key" 2>/dev/null)" != "$KEY" ]; then
	log "building kube-apiserver $VERSION into $DIR (about 10 minutes the first time)"
	start=$(date +%s)
	rm -f "$DIR/key"
	(
		cd "$MOD"
		GOFLAGS="-mod=readonly -buildvcs=false" go build \
			-ldflags "-X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR" \
			-o "$DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	) >&2
	mv "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
	echo "$KEY" >"$DIR/key"
	log "built kube-apiserver in $(($(date +%s) - start))s"
fi
ln -sfn "$ETCD" "$DIR/etcd"
echo "$DIR"
