#!/usr/bin/env bash
# Test environment for the SSH host pool and Ansible: throwaway OpenSSH servers on loopback ports.
#
#   tests/env/sshd.sh install            apt-get openssh-server/openssh-client when missing (idempotent)
#   tests/env/sshd.sh start DIR PORT     in DIR: ed25519 host key, user key (DIR/user_key), authorized_keys,
#                                        sshd_config; start sshd on 127.0.0.1:PORT; prints PID=... KEY=... PORT=...
# Keys are made fresh per DIR and never leave it. sshd needs its privilege-separation directory
# /run/sshd, and runs without PAM or StrictModes so a temp dir's permissions are accepted.
set -euo pipefail

SSHD=/usr/sbin/sshd

install() {
    if [ -x "$SSHD" ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "sshd.sh: need root to apt-get install openssh-server openssh-client" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q openssh-server openssh-client >/dev/null 2>&1 || {
        apt-get update -q >/dev/null && apt-get install -y -q openssh-server openssh-client >/dev/null
    }
}

start() {
    local dir="$1" port="$2"
    mkdir -p "$dir" /run/sshd
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" >/dev/null
    [ -f "$dir/user_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key" >/dev/null
    cp "$dir/user_key.pub" "$dir/authorized_keys"
    cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PidFile $dir/sshd.pid
StrictModes no
UsePAM no
MaxStartups 100:30:200
MaxSessions 50
CONF
    rm -f "$dir/sshd.pid"
    "$SSHD" -f "$dir/sshd_config" -E "$dir/sshd.log"
    for _ in $(seq 1 100); do
        [ -s "$dir/sshd.pid" ] && break
        sleep 0.05
    done
    [ -s "$dir/sshd.pid" ] || { echo "sshd.sh: sshd did not start: $(tail -3 "$dir/sshd.log")" >&2; return 1; }
    echo "PID=$(cat "$dir/sshd.pid")"
    echo "KEY=$dir/user_key"
    echo "PORT=$port"
}

case "${1:-}" in
    install) install ;;
    start) [ -n "${3:-}" ] || { echo "usage: $0 start DIR PORT" >&2; exit 2; }; install; start "$2" "$3" ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
esac
