#!/usr/bin/env bash
# Builds the goray container image with the local Docker Engine:
#
#   bash deploy/image/build.sh [TAG]      (default goray:latest)
#
# TAG is REPOSITORY[:TAG], e.g. myregistry/goray:dev; the image is also
# tagged REPOSITORY:<version>, and the dangling images pruned after a build
# are only this REPOSITORY's.
#
# The image is FROM scratch and holds:
#   /usr/local/bin/goray      static goray (CGO_ENABLED=0), /usr/local/bin/ray -> goray
#   /usr/local/bin/goray-operator  the Kubernetes operator (operator/cmd/goray-operator)
#   /bin/bash, /bin/sh        Debian's bash-static
#   /bin/busybox + applets    Debian's busybox-static (ls cat ps kill sleep grep sed awk ip ...)
#   /usr/bin/wget             GNU wget and its libraries: KubeRay's exec probes run
#                             `wget --tries 1 -T 2 -q -O- http://localhost:52365/...`, and
#                             busybox 1.35's wget crashes on -T
#   glibc's loader and libs   /lib64/ld-linux-x86-64.so.2, /lib/x86_64-linux-gnu/libc.so.6, ...
#                             copied from this host: goray workers run the driver's own
#                             executable, usually a dynamically linked (cgo) Go binary
#   /etc/passwd, /etc/group, /etc/nsswitch.conf, /root (HOME), /tmp (1777)
#
# It is also tagged goray:<version> (goray --version). A rebuild is skipped
# when TAG already carries the label goray.io/context-sha256 of the same
# content (the binary's hash plus every other file), so reruns cost a
# cached `go build` and a hash. Needs: go, the docker CLI and daemon, and
# the Debian packages bash-static, busybox-static and wget (installed with
# apt-get when missing). The last line printed is the image ID.
set -euo pipefail

TAG=${1:-goray:latest}
REPO=$TAG
case ${TAG##*/} in *:*) REPO=${TAG%:*} ;; esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

log() { echo "build.sh: $*" >&2; }

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
if ! installed bash-static || ! installed busybox-static || ! installed wget; then
	log "installing bash-static busybox-static wget"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bash-static busybox-static wget >/dev/null
fi

CTX=$(mktemp -d "${TMPDIR:-/tmp}/goray-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
FS=$CTX/rootfs
mkdir -p "$FS"/usr/local/bin "$FS"/bin "$FS"/usr/bin "$FS"/etc "$FS"/root "$FS"/tmp "$FS"/lib64 \
	"$FS"/lib/x86_64-linux-gnu "$FS"/usr/lib "$FS"/dev "$FS"/proc "$FS"/sys "$FS"/var/tmp
chmod 1777 "$FS"/tmp "$FS"/var/tmp
chmod 0700 "$FS"/root

# The static goray binary. -trimpath and -buildvcs=false keep it
# reproducible, so its hash only changes with the code.
CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$FS"/usr/local/bin/goray ./cmd/goray
ln -s goray "$FS"/usr/local/bin/ray
CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$FS"/usr/local/bin/goray-operator ./operator/cmd/goray-operator
VERSION=$("$FS"/usr/local/bin/goray --version | awk '{print $NF}')

# Shells and tools.
cp /bin/bash-static "$FS"/bin/bash
ln -s bash "$FS"/bin/sh
cp /bin/busybox "$FS"/bin/busybox
for applet in $(/bin/busybox --list); do
	case $applet in
	busybox | sh | bash | wget) continue ;;
	esac
	[ -e "$FS/bin/$applet" ] || ln -s busybox "$FS/bin/$applet"
done
ln -s /bin/busybox "$FS"/usr/bin/env

# glibc: the loader and the libraries a cgo Go binary (and glibc's own
# dlopen of NSS and libgcc_s) may need, at the paths they have here.
MULTI=/lib/x86_64-linux-gnu
for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 \
	libutil.so.1 libanl.so.1 libnss_files.so.2 libnss_dns.so.2 libgcc_s.so.1; do
	if [ -e "$MULTI/$lib" ]; then
		cp -L "$MULTI/$lib" "$FS$MULTI/$lib"
	fi
done
cp /usr/bin/wget "$FS"/usr/bin/wget
for lib in $(ldd /usr/bin/wget | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
	cp -L "$lib" "$FS$MULTI/$(basename "$lib")"
done
[ -e "$FS$MULTI/libc.so.6" ] && [ -e "$FS$MULTI/ld-linux-x86-64.so.2" ] || { log "glibc not found under $MULTI"; exit 1; }
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$FS"/lib64/ld-linux-x86-64.so.2
ln -s ../../lib/x86_64-linux-gnu "$FS"/usr/lib/x86_64-linux-gnu

cat >"$FS"/etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$FS"/etc/group <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
printf 'hosts: files dns\nnetworks: files\npasswd: files\ngroup: files\n' >"$FS"/etc/nsswitch.conf

DOCKERFILE_BODY='FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/root GORAY_TEMP=/tmp/goray
WORKDIR /root
CMD ["/usr/local/bin/goray", "--help"]'
BIN_SHA=$(sha256sum "$FS"/usr/local/bin/goray | cut -d' ' -f1)
# The content hash covers every path, its mode, link target and contents.
CONTENT_SHA=$(
	cd "$FS"
	find . -printf '%p %m %y %l\n' | LC_ALL=C sort
	find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
)
CONTENT_SHA=$(printf '%s\n%s\n%s\n' "$CONTENT_SHA" "$VERSION" "$DOCKERFILE_BODY" | sha256sum | cut -d' ' -f1)

if [ "$(docker image inspect --format '{{index .Config.Labels "goray.io/context-sha256"}}' "$TAG" 2>/dev/null || true)" = "$CONTENT_SHA" ]; then
	log "$TAG is up to date (goray $VERSION, binary sha256 $BIN_SHA)"
	docker tag "$TAG" "$REPO:$VERSION"
	docker image inspect --format '{{.Id}}' "$TAG"
	exit 0
fi

# One layer from a tar that keeps modes (/tmp's sticky bit), symlinks and
# root ownership.
tar --numeric-owner --owner=0 --group=0 -C "$FS" -cf "$CTX"/rootfs.tar .
rm -rf "$FS"
printf '%s\nLABEL goray.io/version="%s" goray.io/binary-sha256="%s" goray.io/context-sha256="%s" goray.io/repository="%s"\n' \
	"$DOCKERFILE_BODY" "$VERSION" "$BIN_SHA" "$CONTENT_SHA" "$REPO" >"$CTX"/Dockerfile

log "building $TAG (goray $VERSION, binary sha256 $BIN_SHA)"
# The legacy builder: it needs no buildx plugin and no pulls (FROM scratch).
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" -t "$REPO:$VERSION" "$CTX" >/dev/null 2>"$CTX"/build.err || {
	cat "$CTX"/build.err >&2
	exit 1
}
# Drop the untagged images of this repository (label goray.io/repository)
# that earlier builds replaced, once they are an hour old (a test that
# pinned one by ID may still be starting it). Other repositories' builds
# (another TAG) are left alone.
docker image prune -f --filter "label=goray.io/repository=$REPO" --filter until=1h >/dev/null 2>&1 || true
docker image inspect --format '{{.Id}}' "$TAG"
