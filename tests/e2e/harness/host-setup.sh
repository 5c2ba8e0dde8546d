#!/usr/bin/env bash
# Prepare this host to run the e2e node: the Debian packages a kubelet (dockershim) node needs and
# a docker daemon configured for it. Idempotent; needs root; fails loudly with the reason.
#
#   sudo tests/e2e/harness/host-setup.sh        # called by .ci/run, `make cluster`, the harness
#
# 1. Installs the missing ones of PACKAGES (apt-get update only when one is missing). Services
#    the packages ship are not started by the install (a temporary policy-rc.d says no).
# 2. Writes, under ${KUBEBOTS_E2E_STATE:-/var/lib/kubebots-e2e}/docker (never in the repository):
#    - runc-wrapper: docker's default runtime. It clamps a negative oomScoreAdj in the OCI bundle
#      to 0, then execs runc. kubelet asks for -998 for pod sandboxes; setting a negative
#      oom_score_adj needs CAP_SYS_RESOURCE, which sandboxed CI machines drop, and runc then
#      fails every pod. Non-negative values (kubelet's QoS 2..1000) pass unchanged.
#    - daemon.json: that runtime as the default, overlay2, cgroupfs (kubelet uses cgroupfs too).
# 3. Starts dockerd with that config (log: STATE/docker/dockerd.log) unless a daemon already
#    answers. One that answers with the wrapper as its default runtime is reused; one that answers
#    without it is an error (this script never stops a daemon it did not start).
# 4. Waits until `docker info` answers.
#
# stdout stays empty; progress and errors go to stderr. Environment:
#   KUBEBOTS_E2E_STATE    state directory (default /var/lib/kubebots-e2e)
#   KUBEBOTS_E2E_DOCKER   the docker client (default /usr/bin/docker, Debian's 20.10 client: a
#                         newer client elsewhere on PATH may speak an API the daemon lacks)
#   KUBEBOTS_E2E_DOCKERD_TIMEOUT  seconds to wait for the daemon (default 90)
set -euo pipefail

PACKAGES=(
    docker.io                  # dockerd 20.10 + containerd + runc: the runtime of dockershim
    containernetworking-plugins # /usr/lib/cni: bridge, host-local, loopback, portmap
    iptables conntrack         # kube-proxy (iptables mode) and docker's NAT
    socat ethtool              # kubelet: port-forward; veth checks
    iproute2 kmod procps       # ip, modprobe (docker, kube-proxy), ps/kill
    debootstrap wget debian-archive-keyring ca-certificates # the stand-in base image (images.py)
)
STATE=${KUBEBOTS_E2E_STATE:-/var/lib/kubebots-e2e}
DIR=$STATE/docker
WRAPPER=$DIR/runc-wrapper
CONFIG=$DIR/daemon.json
LOG=$DIR/dockerd.log
RUNTIME_NAME=kubebots-runc
DOCKERD_TIMEOUT=${KUBEBOTS_E2E_DOCKERD_TIMEOUT:-90}
if [ -n "${KUBEBOTS_E2E_DOCKER:-}" ]; then
    DOCKER=$KUBEBOTS_E2E_DOCKER
elif [ -x /usr/bin/docker ]; then
    DOCKER=/usr/bin/docker
else
    DOCKER=docker
fi
export DOCKER_API_VERSION=1.41 # what Debian's dockerd 20.10 speaks, whatever the client
START=$(date +%s.%N)

elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
log() { printf '[host-setup %5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
trap 'log "command failed at line $LINENO"' ERR

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts dockerd)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || die "apt-get/dpkg-query not found: this script needs a Debian host"

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9 || die "cannot lock $DIR/.lock"

# --- 1. packages -------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    # No service starts from the install: on a systemd host docker.service would otherwise come
    # up with the stock config (runc as default runtime) and hold the socket we need.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt_log=$DIR/apt.log
    if ! apt-get update -qq >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die "apt-get update failed (log: $apt_log)"
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >>"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die "apt-get install ${missing[*]} failed (log: $apt_log)"
    fi
    log "installed ${missing[*]}"
fi
for tool in /usr/sbin/dockerd /usr/sbin/runc "$(command -v "$DOCKER" || echo "$DOCKER")"; do
    [ -x "$tool" ] || die "$tool is missing after installing the packages"
done

# --- 2. runtime wrapper and daemon config (rewritten only when different) ---------------------
# write_if_changed PATH MODE: stdin becomes PATH, atomically, if its content differs.
write_if_changed() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$1"
        log "wrote $1"
    fi
}

write_if_changed "$WRAPPER" 0755 <<'EOF'
#!/bin/sh
# kubebots e2e: docker's default runtime (written by tests/e2e/harness/host-setup.sh).
# Clamps a negative oomScoreAdj to 0 in the OCI config (`create/run --bundle DIR`) or process
# spec (`exec --process FILE`), then runs runc: this host cannot set a negative oom_score_adj
# (no CAP_SYS_RESOURCE) and kubelet asks for -998 for every pod sandbox.
bundle=""
process=""
prev=""
for a in "$@"; do
    case "$prev" in
        --bundle | -b) bundle=$a ;;
        --process | -p) process=$a ;;
    esac
    case "$a" in
        --bundle=*) bundle=${a#--bundle=} ;;
        --process=*) process=${a#--process=} ;;
    esac
    prev=$a
done
for f in "${bundle:+$bundle/config.json}" "$process"; do
    if [ -n "$f" ] && [ -f "$f" ]; then
        sed -i -E 's/"oomScoreAdj":[[:space:]]*-[0-9]+/"oomScoreAdj":0/' "$f"
    fi
done
exec /usr/sbin/runc "$@"
EOF

write_if_changed "$CONFIG" 0644 <<EOF
{
  "runtimes": {"$RUNTIME_NAME": {"path": "$WRAPPER"}},
  "default-runtime": "$RUNTIME_NAME",
  "storage-driver": "overlay2",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
EOF

# --- 3. the daemon -----------------------------------------------------------------------------
# daemon_state: prints "RUNTIME|PATH|CGROUPDRIVER|VERSION" when a daemon answers; returns 2 when
# none listens, 1 on any other error (message on stderr).
daemon_state() {
    local out rc=0 fields
    fields='{{.DefaultRuntime}}|{{(index .Runtimes .DefaultRuntime).Path}}|{{.CgroupDriver}}'
    fields+='|{{.ServerVersion}}'
    # Without a server, the client fills ServerErrors and leaves the rest empty.
    out=$(timeout 15 "$DOCKER" info --format \
        "{{if .ServerErrors}}ERROR {{index .ServerErrors 0}}{{else}}OK $fields{{end}}" 2>&1) || rc=$?
    case "$rc:$out" in
        "0:OK "*)
            printf '%s\n' "${out#OK }"
            return 0 ;;
        *"Cannot connect to the Docker daemon"*) return 2 ;;
    esac
    printf '%s info (exit %s): %s\n' "$DOCKER" "$rc" "$out" >&2
    return 1
}

# check_daemon STATE: the answering daemon must run pods through the wrapper, on cgroupfs.
check_daemon() {
    local runtime path driver version
    IFS='|' read -r runtime path driver version <<<"$1"
    if [ "$path" != "$WRAPPER" ]; then
        die "a docker daemon already answers (version $version) but its default runtime is" \
            "'$runtime' ($path), not $WRAPPER: kubelet's pod sandboxes (oom_score_adj -998)" \
            "would fail on this host. Stop that daemon (pid $(cat /var/run/docker.pid 2>/dev/null \
            || echo '?')), or give it --config-file $CONFIG, and run this again"
    fi
    [ "$driver" = cgroupfs ] || die "the docker daemon uses cgroup driver '$driver', not cgroupfs"
    log "docker $version answers, default runtime $runtime ($path), cgroup driver $driver"
}

rc=0
state=$(daemon_state) || rc=$?
if [ "$rc" -eq 0 ]; then
    check_daemon "$state"
    log "ready in $(elapsed)s (daemon already running)"
    exit 0
fi
[ "$rc" -eq 2 ] || die "'$DOCKER info' failed (see above)"

pidfile=/var/run/docker.pid
pid=""
if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
        log "dockerd (pid $pid) is running but does not answer yet: waiting for it"
    else
        pid=""
    fi
fi
if [ -z "$pid" ]; then
    command -v iptables >/dev/null || die "iptables is missing (docker's NAT needs it)"
    log "starting dockerd --config-file $CONFIG (log: $LOG)"
    printf '\n--- %s host-setup.sh starts dockerd ---\n' "$(date -Is)" >>"$LOG"
    # Detached from us: its own session, no inherited stdio (a caller reading our output to EOF
    # would otherwise wait for the daemon), no lock fd. setsid execs dockerd: $! is its pid.
    setsid /usr/sbin/dockerd --config-file "$CONFIG" </dev/null >>"$LOG" 2>&1 9>&- &
    pid=$!
fi

deadline=$(($(date +%s) + DOCKERD_TIMEOUT))
while :; do
    rc=0
    state=$(daemon_state 2>/dev/null) || rc=$?
    [ "$rc" -eq 0 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        tail -n 30 "$LOG" >&2 || true
        die "dockerd did not answer within ${DOCKERD_TIMEOUT}s (log: $LOG)"
    fi
    if [ ! -d "/proc/$pid" ] || [ "$(awk "{print \$3}" "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
        tail -n 30 "$LOG" >&2 || true
        die "dockerd (pid $pid) exited during start-up (log: $LOG)"
    fi
    sleep 0.3
done
check_daemon "$state"
log "ready in $(elapsed)s (dockerd pid $(cat "$pidfile" 2>/dev/null || echo '?'))"
