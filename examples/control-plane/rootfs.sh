#!/usr/bin/env bash
# Build the control plane's image with no image registry: a base assembled from this machine's Python 3.11.
#
#   rootfs.sh base DIR [TAG]   assemble DIR/rootfs (this machine's Python 3.11 with the shared libraries ldd
#                              finds, pip, a static busybox for /bin/sh) and build it FROM scratch as TAG
#                              (default localhost/strato-python-base:3.11)
#   rootfs.sh wheels DIR       download the wheels of Strato's dependencies (extras api, postgres) and of the
#                              build tools into DIR, so the image builds with `pip --no-index` (no network)
#
# Then, from the repository's root:
#   podman build --format docker -f examples/control-plane/Containerfile -t strato-control-plane \
#     --build-arg BASE=localhost/strato-python-base:3.11 \
#     --build-arg PIP_OPTIONS="--no-index --find-links /wheels" -v DIR/wheels:/wheels:ro .
# With a registry none of this is needed: the Containerfile's default base is python:3.11-slim.
# PYTHON picks the interpreter (default python3.11); EXTRAS the extras (default api,postgres).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
EXTRAS="${EXTRAS:-api,postgres}"
PREFIX=/usr/local   # where Python lives in the image, as in python:3.11-slim

py() { "$PYTHON" -c "import sys, sysconfig; print($1)"; }

copy_python() {  # the interpreter, libpython and the standard library (no tests, no GUI, no site-packages)
    local root="$1" base stdlib
    base=$(py 'sys.base_prefix')
    stdlib=$(py 'sysconfig.get_paths()["stdlib"]')
    mkdir -p "$root$PREFIX/bin" "$root$PREFIX/lib"
    cp -L "$base/bin/python3.11" "$root$PREFIX/bin/python3.11"
    ln -sf python3.11 "$root$PREFIX/bin/python3"
    ln -sf python3.11 "$root$PREFIX/bin/python"
    if [ -e "$base/lib/libpython3.11.so.1.0" ]; then cp -L "$base/lib/libpython3.11.so.1.0" "$root$PREFIX/lib/"; fi
    tar -C "$(dirname "$stdlib")" -cf - --exclude=site-packages --exclude=test --exclude=tests \
        --exclude=idlelib --exclude=tkinter --exclude=turtledemo --exclude='_tkinter*' --exclude='config-3.11-*' \
        --exclude=__pycache__ "$(basename "$stdlib")" | tar -C "$root$PREFIX/lib" -xf -
    mkdir -p "$root$PREFIX/lib/python3.11/site-packages"
    # pip from the wheel Python itself bundles (no network)
    "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-compile \
        --find-links "$stdlib/ensurepip/_bundled" --target "$root$PREFIX/lib/python3.11/site-packages" pip
}

# the libraries a manylinux wheel may assume the system has (pydantic-core needs librt and libgcc_s)
MANYLINUX='libgcc_s.so.1|libstdc\+\+.so.6|libm.so.6|libdl.so.2|librt.so.1|libc.so.6|libpthread.so.0'
MANYLINUX+='|libutil.so.1|libresolv.so.2|libz.so.1|libexpat.so.1'

needed_libraries() {  # the paths of the libraries the interpreter, its extension modules and wheels load
    local root="$1"
    {
        ldd "$root$PREFIX/bin/python3.11"
        find "$root$PREFIX/lib/python3.11/lib-dynload" -name '*.so' -exec ldd {} \;
        ldconfig -p | awk -v re="^($MANYLINUX) " '$1 " " ~ re {print "lib => " $NF}'
    } | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | sort -u
}

copy_libraries() {  # each at the path ldd found it (the dynamic loader's default search path)
    local root="$1" base lib
    base=$(py 'sys.base_prefix')
    for lib in $(needed_libraries "$root"); do
        case "$lib" in "$base"/*) continue ;; esac   # libpython: already under $PREFIX/lib
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

add_busybox() {  # /bin/sh and the usual tools for the Containerfile's RUN lines
    local root="$1" applet
    [ -x /bin/busybox ] || { echo "rootfs.sh: needs a static busybox (apt-get install busybox-static)" >&2; exit 1; }
    mkdir -p "$root/bin"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
}

base() {
    local dir="$1" tag="${2:-localhost/strato-python-base:3.11}" root="$1/rootfs"
    rm -rf "$root"
    mkdir -p "$root/etc" "$root/tmp" "$root/root"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    copy_python "$root"
    copy_libraries "$root"
    add_busybox "$root"
    tar -C "$root" --owner=0 --group=0 --numeric-owner -cf "$dir/rootfs.tar" .
    cat > "$dir/Containerfile" <<CONTAINERFILE
FROM scratch
ADD rootfs.tar /
ENV PATH=$PREFIX/bin:/usr/bin:/bin LD_LIBRARY_PATH=$PREFIX/lib LANG=C.UTF-8
CMD ["python3"]
CONTAINERFILE
    podman build -q --format docker -t "$tag" "$dir" >/dev/null
    echo "BASE=$tag"
}

wheels() {
    local dir="$1"
    mkdir -p "$dir"
    "$PYTHON" "$HERE/requirements.py" "$REPO/setup.cfg" "$EXTRAS" > "$dir/requirements.txt"
    "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$dir" \
        -r "$dir/requirements.txt" "setuptools>=61" wheel
    echo "WHEELS=$dir"
}

case "${1:-}" in
    base) [ -n "${2:-}" ] || { echo "usage: $0 base DIR [TAG]" >&2; exit 64; }; mkdir -p "$2"; base "$2" "${3:-}" ;;
    wheels) [ -n "${2:-}" ] || { echo "usage: $0 wheels DIR" >&2; exit 64; }; wheels "$2" ;;
    *) sed -n '2,16p' "$0"; exit 64 ;;
esac
