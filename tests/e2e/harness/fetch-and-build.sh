#!/usr/bin/env bash
# Fetch and build the Kubernetes binaries the e2e tests run against: kube-apiserver, kubectl and
# the node binaries (kubelet, kube-proxy, kube-scheduler, kube-controller-manager) 1.20.2, built
# from Debian bookworm's `kubernetes` source package with Go 1.15 from bullseye, plus etcd 3.4
# (bookworm's `etcd-server`) and the pause image's static binary (the tree's build/pause).
#
# Idempotent: when the three binaries are in the cache and report the expected versions, it prints
# their paths and exits 0 (in ~0.2 s); a missing or wrong one is rebuilt/refetched alone.
# Everything lives OUTSIDE the repository, keyed by version, so it builds once per machine:
#   ${KUBEBOTS_E2E_CACHE:-$HOME/.cache/kubebots-e2e}/k8s-1.20.2/bin/{kube-apiserver,kubectl,...}
# The host's apt sources are never touched: apt runs on a private sources list and state dir.
# Only Debian's package mirror is needed. stdout is only `NAME=PATH` lines, one per binary.
set -euo pipefail

K8S_VERSION=1.20.2
GO_VERSION=1.15
ETCD_SERIES=3.4
MIRROR=${KUBEBOTS_E2E_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${KUBEBOTS_E2E_CACHE:-$HOME/.cache/kubebots-e2e}
ROOT=$CACHE/k8s-$K8S_VERSION
BIN=$ROOT/bin
KUBE_BINARIES=(kube-apiserver kubectl kubelet kube-proxy kube-scheduler kube-controller-manager)
BINARIES=("${KUBE_BINARIES[@]}" etcd pause)
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

# A cached binary counts only if it runs and reports the expected version.
binary_ok() {
    local path=$BIN/$1 out
    [ -x "$path" ] || return 1
    case "$1" in
        kube-apiserver | kubelet | kube-proxy | kube-scheduler | kube-controller-manager)
            out=$("$path" --version 2>&1) && [[ $out == "Kubernetes v$K8S_VERSION" ]] ;;
        kubectl) out=$("$path" version --client --short 2>&1) && [[ $out == *"v$K8S_VERSION"* ]] ;;
        etcd) out=$("$path" --version 2>&1) && [[ $out == *"etcd Version: $ETCD_SERIES."* ]] ;;
        pause) out=$(timeout 5 "$path" -v 2>&1) && [[ $out == *"debian-$K8S_VERSION"* ]] ;;
        *) return 1 ;;
    esac
}

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        binary_ok "$b" || return 1
    done
}

# install_binary SRC NAME: copy into the cache atomically, then check it.
install_binary() {
    cp "$1" "$BIN/.$2.tmp"
    chmod 0755 "$BIN/.$2.tmp"
    mv -f "$BIN/.$2.tmp" "$BIN/$2"
    binary_ok "$2" || die "$BIN/$2 does not run or is not the expected version"
    log "installed $BIN/$2"
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

need_etcd=false
need_kube=false
binary_ok etcd || need_etcd=true
for b in "${KUBE_BINARIES[@]}" pause; do
    binary_ok "$b" || need_kube=true
done
mkdir -p "$BIN"
if $need_kube; then
    log "building ${KUBE_BINARIES[*]} $K8S_VERSION into $BIN (takes 7-10 minutes on 2 cores)"
fi
if $need_etcd; then
    log "fetching etcd $ETCD_SERIES into $BIN"
fi

# --- host tools ---------------------------------------------------------------------------------
# apt-get and dpkg are Debian's; dpkg-source (dpkg-dev), rsync and make are installed if missing.
command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian host"
command -v dpkg >/dev/null || die "dpkg not found: this script needs a Debian host"
missing=()
if $need_kube; then
    command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v make >/dev/null || missing+=(make)
    command -v gcc >/dev/null || missing+=(gcc)
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] \
        || missing+=(libc6-dev)
fi
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
specs=()
$need_etcd && specs+=(etcd-server/bookworm)
$need_kube && specs+=("golang-$GO_VERSION-go/bullseye" "golang-$GO_VERSION-src/bullseye")
need_debs=()
for spec in "${specs[@]}"; do
    compgen -G "${spec%/*}_*.deb" >/dev/null || need_debs+=("$spec")
done
if [ "${#need_debs[@]}" -gt 0 ]; then
    log "downloading ${need_debs[*]}"
    papt download "${need_debs[@]}" >&2 || die "apt-get download ${need_debs[*]} failed"
fi
# Source package: bookworm's kubernetes, versioned 1.20.5+really1.20.2-* (full tree with vendor/).
if $need_kube; then
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
fi
log "downloads done in $((SECONDS - t0))s: $(find . -maxdepth 1 -type f -printf '%f ')"

WORK=$ROOT/work
rm -rf "$WORK"
mkdir -p "$WORK"

# --- etcd: the binary from bookworm's etcd-server (its /etc/init.d/etcd is a script: skip it) ---
if $need_etcd; then
    dpkg -x etcd-server_*.deb "$WORK/etcd" || die "dpkg -x etcd-server failed"
    [ -x "$WORK/etcd/usr/bin/etcd" ] || die "no usr/bin/etcd inside the etcd-server package"
    install_binary "$WORK/etcd/usr/bin/etcd" etcd
fi

# --- the Kubernetes binaries: Go 1.15 from bullseye, bookworm's kubernetes source ------------
if $need_kube; then
    t0=$SECONDS
    for deb in "golang-$GO_VERSION-go_"*.deb "golang-$GO_VERSION-src_"*.deb; do
        dpkg -x "$deb" "$WORK/go" || die "dpkg -x $deb failed"
    done
    export GOROOT=$WORK/go/usr/lib/go-$GO_VERSION
    [ -x "$GOROOT/bin/go" ] || die "Go $GO_VERSION not found at $GOROOT/bin/go after unpacking"
    [ -d "$GOROOT/src/runtime" ] || die "Go $GO_VERSION standard library not found at $GOROOT/src"

    log "unpacking $dsc"
    dpkg-source --no-check -x "$dsc" "$WORK/kubernetes" >"$WORK/dpkg-source.log" 2>&1 || {
        tail -n 20 "$WORK/dpkg-source.log" >&2
        die "dpkg-source -x $dsc failed"
    }
    SRC=$WORK/kubernetes
    [ -f "$SRC/vendor/modules.txt" ] || die "$SRC has no vendor/ tree; cannot build offline"
    log "unpacked in $((SECONDS - t0))s"

    # The tree has no .git: hand the build its version (else binaries say v0.0.0-master).
    K8S_MINOR=${K8S_VERSION#*.}
    K8S_MINOR=${K8S_MINOR%%.*}
    cat >"$WORK/version.env" <<EOF
KUBE_GIT_COMMIT='debian-$K8S_VERSION'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='v$K8S_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='$K8S_MINOR'
EOF
    # Debian's rules build through a GOPATH symlink to the tree; do the same.
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
    log "go: $(go version)"
    t0=$SECONDS
    what=""
    for b in "${KUBE_BINARIES[@]}"; do
        what+="cmd/$b "
    done
    log "make WHAT='${what% }' (log: $WORK/build.log)"
    if ! (cd "$SRC" && make WHAT="${what% }") >"$WORK/build.log" 2>&1; then
        tail -n 40 "$WORK/build.log" >&2
        die "kubernetes build failed (full log: $WORK/build.log)"
    fi
    log "built in $((SECONDS - t0))s"
    for b in "${KUBE_BINARIES[@]}"; do
        [ -x "$SRC/_output/bin/$b" ] || die "the build produced no $SRC/_output/bin/$b"
        install_binary "$SRC/_output/bin/$b" "$b"
    done
    # The pause container's binary, from the same tree (no image can be pulled here).
    pause_c=$SRC/build/pause/linux/pause.c
    [ -f "$pause_c" ] || pause_c=$SRC/build/pause/pause.c
    [ -f "$pause_c" ] || die "no build/pause/linux/pause.c in the source tree"
    gcc -Os -Wall -Werror -static -DVERSION="v3.4.1-debian-$K8S_VERSION" -o "$WORK/pause" "$pause_c" \
        || die "gcc -static $pause_c failed"
    strip "$WORK/pause" || true
    install_binary "$WORK/pause" pause
fi

have_all || die "binaries missing or wrong after the build"
rm -rf "$WORK"
log "done in $((SECONDS - START))s"
print_paths
