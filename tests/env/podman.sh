#!/usr/bin/env bash
# Test environment for the docker driver: Podman's Docker-compatible API on a private unix socket, and a tiny image.
#
#   tests/env/podman.sh install        apt-get podman, runc and busybox-static when missing (idempotent)
#   tests/env/podman.sh start DIR      write DIR/containers.conf, start `podman system service` on
#                                      DIR/podman.sock, build the image strato-busybox:2; prints
#                                      DOCKER_HOST=... CONTAINERS_CONF=... PID=... lines
# Podman's settings stay in a private CONTAINERS_CONF (never /etc): this VM kind lacks
# CAP_SYS_RESOURCE (hence the ulimits) and runs cgroups in hybrid mode (hence runc + cgroupfs).
set -euo pipefail

IMAGE="${STRATO_TEST_IMAGE:-strato-busybox:2}"  # bump the tag when the rootfs changes

install() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx httpd || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "podman.sh: need root to apt-get install ${missing[*]}" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
    }
}

write_conf() {
    cat > "$1/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
}

build_image() {
    # FROM scratch + a rootfs holding only a static busybox (httpd, sh, sleep, wget...).
    local ctx="$1/image"
    mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/www" "$ctx/rootfs/tmp"
    cp /bin/busybox "$ctx/rootfs/bin/busybox"
    for tool in sh httpd sleep wget cat echo env ls awk head printf; do ln -sf busybox "$ctx/rootfs/bin/$tool"; done
    echo ok > "$ctx/rootfs/www/index.html"
    tar -C "$ctx/rootfs" -cf "$ctx/rootfs.tar" .
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]\n' > "$ctx/Dockerfile"
    podman build -q -t "$IMAGE" "$ctx" >/dev/null
}

start() {
    local dir="$1"
    mkdir -p "$dir"
    write_conf "$dir"
    export CONTAINERS_CONF="$dir/containers.conf"
    local sock="$dir/podman.sock"
    rm -f "$sock"
    setsid podman system service --time=0 "unix://$sock" >"$dir/podman-service.log" 2>&1 < /dev/null &
    local pid=$!
    for _ in $(seq 1 100); do
        [ -S "$sock" ] && break
        kill -0 "$pid" 2>/dev/null || { echo "podman.sh: podman system service exited: $(tail -3 "$dir/podman-service.log")" >&2; return 1; }
        sleep 0.1
    done
    [ -S "$sock" ] || { echo "podman.sh: no socket at $sock after 10 s" >&2; kill "$pid"; return 1; }
    podman image exists "$IMAGE" || build_image "$dir"
    echo "DOCKER_HOST=unix://$sock"
    echo "CONTAINERS_CONF=$CONTAINERS_CONF"
    echo "PID=$pid"
    echo "IMAGE=$IMAGE"
}

case "${1:-}" in
    install) install ;;
    start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }; install; start "$2" ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
