#!/usr/bin/env bash
# Fetch and build the Kubernetes control-plane binaries the e2e tests run against:
# kube-apiserver + kubectl 1.20.2 (built from Debian bookworm's `kubernetes` source package with
# Go 1.15 from bullseye) and etcd 3.4 (bookworm's `etcd-server`).
#
# Idempotent: when the three binaries are already in the cache, it prints their paths and exits 0.
# Everything lives OUTSIDE the repository, keyed by version, so it builds once per machine:
#   ${KUBEBOTS_E2E_CACHE:-$HOME/.cache/kubebots-e2e}/k8s-1.20.2/bin/{kube-apiserver,kubectl,etcd}
# The host's apt sources are never touched: apt runs on a private sources list and state dir.
# Only Debian's package mirror is needed. The last lines of stdout are `NAME=PATH`, one a binary.
set -euo pipefail

K8S_VERSION=1.20.2
GO_VERSION=1.15
MIRROR=${KUBEBOTS_E2E_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${KUBEBOTS_E2E_CACHE:-$HOME/.cache/kubebots-e2e}
ROOT=$CACHE/k8s-$K8S_VERSION
BIN=$ROOT/bin
BINARIES=(kube-apiserver kubectl etcd)
START=$SECONDS

log() { printf '[fetch-and-build %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
on_exit() {
    local rc=$?
    [ "$rc" -eq 0 ] || log "FAILED (exit $rc) after $((SECONDS - START))s"
}
trap on_exit EXIT
trap 'log "command failed at line $LINENO"' ERR

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [ -x "$BIN/$b" ] || return 1
    done
}

print_paths() {
    local b
    for b in "${BINARIES[@]}"; do
        printf '%s=%s\n' "$b" "$BIN/$b"
    done
}

if have_all; then
    print_paths
    exit 0
fi

mkdir -p "$ROOT"
# One build at a time per cache (parallel test runs wait for the first one instead of racing it).
exec 9>"$ROOT/.lock"
if ! flock -n 9; then
    log "another build holds $ROOT/.lock; waiting for it"
    flock 9
fi
if have_all; then
    print_paths
    exit 0
fi

log "building Kubernetes $K8S_VERSION control-plane binaries into $BIN (takes ~5 minutes)"

# --- host tools ---------------------------------------------------------------------------------
# apt-get and dpkg are Debian's; dpkg-source (dpkg-dev), rsync and make are installed if missing.
command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian host"
command -v dpkg >/dev/null || die "dpkg not found: this script needs a Debian host"
missing=()
command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
command -v rsync >/dev/null || missing+=(rsync)
command -v make >/dev/null || missing+=(make)
command -v flock >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing host packages (${missing[*]}); install them (needs root)"
    log "installing host packages from the host's apt: ${missing[*]}"
    apt-get update -qq || die "host apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "installing ${missing[*]} failed"
fi

# --- private apt: explicit suites, own lists/archives, host sources untouched -------------------
APT_DIR=$ROOT/apt
DL=$ROOT/downloads
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$APT_DIR/trusted.gpg.d" "$DL"
cat >"$APT_DIR/sources.list" <<EOF
deb $MIRROR bookworm main
deb-src $MIRROR bookworm main
deb $MIRROR bullseye main
EOF
# Trust: the Debian archive keyrings the host has (bookworm's and bullseye's keys).
for k in /usr/share/keyrings/debian-archive-keyring.gpg \
    /usr/share/keyrings/debian-archive-removed-keys.gpg \
    /etc/apt/trusted.gpg.d/*.gpg /etc/apt/trusted.gpg.d/*.asc; do
    [ -f "$k" ] && cp -f "$k" "$APT_DIR/trusted.gpg.d/"
done
ls "$APT_DIR"/trusted.gpg.d/* >/dev/null 2>&1 \
    || die "no Debian archive keyring found (apt-get install debian-archive-keyring)"

APT_OPTS=(
    -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Dir::Etc::TrustedParts=$APT_DIR/trusted.gpg.d"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache::archives=$APT_DIR/archives"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
    -o "Acquire::Retries=3"
)
papt() { apt-get "${APT_OPTS[@]}" "$@"; }

t0=$SECONDS
log "apt-get update (private lists: bookworm main + deb-src, bullseye main)"
papt update -qq >"$APT_DIR/update.log" 2>&1 || {
    cat "$APT_DIR/update.log" >&2
    die "private apt-get update failed"
}

cd "$DL"
# Binary packages: etcd 3.4 from bookworm, Go 1.15 (compiler + standard library) from bullseye.
need_debs=()
for spec in etcd-server/bookworm golang-$GO_VERSION-go/bullseye golang-$GO_VERSION-src/bullseye; do
    pkg=${spec%/*}
    compgen -G "${pkg}_*.deb" >/dev/null || need_debs+=("$spec")
done
if [ "${#need_debs[@]}" -gt 0 ]; then
    log "downloading ${need_debs[*]}"
    papt download "${need_debs[@]}" || die "apt-get download ${need_debs[*]} failed"
fi
# Source package: bookworm's kubernetes, versioned 1.20.5+really1.20.2-* (full tree with vendor/).
if ! compgen -G "kubernetes_*.dsc" >/dev/null; then
    log "downloading source package kubernetes/bookworm"
    papt source --download-only kubernetes/bookworm >"$APT_DIR/source.log" 2>&1 || {
        cat "$APT_DIR/source.log" >&2
        die "apt-get source kubernetes/bookworm failed"
    }
fi
dsc=$(compgen -G "kubernetes_*.dsc" | head -n1)
case "$dsc" in
    kubernetes_"$K8S_VERSION"[-+]* | kubernetes_*really"$K8S_VERSION"[-+]*) ;;
    *) die "source package $dsc is not Kubernetes $K8S_VERSION" ;;
esac
log "downloads done in $((SECONDS - t0))s: $(find . -maxdepth 1 -type f -printf '%f ')"

# --- unpack -------------------------------------------------------------------------------------
WORK=$ROOT/work
rm -rf "$WORK"
mkdir -p "$WORK/go" "$WORK/etcd"
t0=$SECONDS
for deb in "golang-$GO_VERSION-go_"*.deb "golang-$GO_VERSION-src_"*.deb; do
    dpkg -x "$deb" "$WORK/go" || die "dpkg -x $deb failed"
done
dpkg -x etcd-server_*.deb "$WORK/etcd" || die "dpkg -x etcd-server failed"
export GOROOT=$WORK/go/usr/lib/go-$GO_VERSION
[ -x "$GOROOT/bin/go" ] || die "Go $GO_VERSION not found at $GOROOT/bin/go after unpacking"
[ -d "$GOROOT/src/runtime" ] || die "Go $GO_VERSION standard library not found at $GOROOT/src"
etcd_bin=$(find "$WORK/etcd" -type f -name etcd -perm -u+x | head -n1)
[ -n "$etcd_bin" ] || die "no etcd binary inside the etcd-server package"

log "unpacking $dsc"
dpkg-source --no-check -x "$dsc" "$WORK/kubernetes" >"$WORK/dpkg-source.log" 2>&1 || {
    tail -n 20 "$WORK/dpkg-source.log" >&2
    die "dpkg-source -x $dsc failed"
}
SRC=$WORK/kubernetes
[ -f "$SRC/vendor/modules.txt" ] || die "$SRC has no vendor/ tree; cannot build offline"
log "unpacked in $((SECONDS - t0))s"

# --- build --------------------------------------------------------------------------------------
# The tree has no .git: hand the build its version so binaries report v1.20.2, not v0.0.0-master.
K8S_MINOR=${K8S_VERSION#*.}
K8S_MINOR=${K8S_MINOR%%.*}
cat >"$WORK/version.env" <<EOF
KUBE_GIT_COMMIT='debian-$K8S_VERSION'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='v$K8S_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='$K8S_MINOR'
EOF
mkdir -p "$WORK/gopath/src/k8s.io"
ln -sfn "$SRC" "$WORK/gopath/src/k8s.io/kubernetes"
export PATH=$GOROOT/bin:$PATH
export GOPATH=$WORK/gopath
export GOCACHE=$WORK/gocache
export GOFLAGS=-mod=vendor
export GOPROXY=off
export GO111MODULE=on
export CGO_ENABLED=0
export KUBE_GIT_VERSION_FILE=$WORK/version.env
export KUBE_VERBOSE=1
log "go: $(go version)"
t0=$SECONDS
log "make WHAT='cmd/kube-apiserver cmd/kubectl' (log: $WORK/build.log)"
if ! (cd "$SRC" && make WHAT="cmd/kube-apiserver cmd/kubectl") >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    die "kubernetes build failed (full log: $WORK/build.log)"
fi
log "built in $((SECONDS - t0))s"

out=$SRC/_output/bin
[ -x "$out/kube-apiserver" ] || out=$(dirname "$(find "$SRC/_output" -type f -name kube-apiserver | head -n1)")
for b in kube-apiserver kubectl; do
    [ -x "$out/$b" ] || die "build produced no $b under $SRC/_output"
done

# --- install into the cache (atomically), check, clean up ---------------------------------------
stage=$ROOT/bin.tmp
rm -rf "$stage"
mkdir -p "$stage"
cp "$out/kube-apiserver" "$out/kubectl" "$stage/"
cp "$etcd_bin" "$stage/etcd"
chmod 0755 "$stage"/*
"$stage/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"
"$stage/kubectl" version --client --short >&2 || die "the built kubectl does not run"
"$stage/etcd" --version >&2 || die "the unpacked etcd does not run"
rm -rf "$BIN"
mv "$stage" "$BIN"
rm -rf "$WORK"
log "done in $((SECONDS - START))s"
print_paths
