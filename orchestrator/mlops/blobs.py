"""The content-addressed store of model artifacts: a file or a directory kept under its sha256, private to its user.

A file's digest is the sha256 of its bytes (what `sha256sum` prints). A directory's digest is the sha256 of a
manifest listing each file's relative path and digest, so the same tree gives the same digest wherever it lies.
Blobs are written to a private temporary name first and renamed into place: a reader never sees half a blob,
and two processes storing the same content at once both end with the one blob.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from drivers.common import make_private_dir

CHUNK = 1 << 20
TREE_PREFIX = b"strato-tree-v1\n"   # a directory's manifest can never collide with a file that lacks this line


class BlobError(Exception):
    """An artifact that cannot be stored (missing, empty, a symlink inside a directory)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class BlobStore:
    """Blobs under ROOT/blobs/sha256/<hex>; incoming copies under ROOT/tmp (same file system, so rename is atomic)."""

    def __init__(self, root: str):
        self.dir = os.path.join(root, "blobs", "sha256")
        self.tmp = os.path.join(root, "tmp")
        for path in (os.path.dirname(self.dir), self.dir, self.tmp):   # each level private, whatever the umask
            make_private_dir(path)

    def path(self, digest: str) -> str:
        """The blob's path for a digest 'sha256:<hex>' (no check that it exists)."""
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise BlobError("DIGEST_INVALID", f"'{digest}' is not a digest of the form sha256:<64 hex digits>")
        return os.path.join(self.dir, hexdigest)

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def put(self, source: str) -> str:
        """Store a file or a directory; returns its digest 'sha256:<hex>'."""
        if os.path.isdir(source):
            return self._put_tree(source)
        if not os.path.isfile(source):
            raise BlobError("ARTIFACT_NOT_FOUND", f"no file or directory at '{source}'")
        if os.path.getsize(source) == 0:
            raise BlobError("ARTIFACT_EMPTY", f"'{source}' is empty; a model artifact has at least one byte")
        fd, incoming = tempfile.mkstemp(dir=self.tmp, prefix="incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                hexdigest = _copy_hashing(source, out)
            return self._settle(incoming, hexdigest)
        finally:
            _remove(incoming)

    def put_bytes(self, data: bytes) -> str:
        """Store bytes received from elsewhere (an upload): the same as put() of a file holding them."""
        if not data:
            raise BlobError("ARTIFACT_EMPTY", "the artifact is empty; a model artifact has at least one byte")
        fd, incoming = tempfile.mkstemp(dir=self.tmp, prefix="incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            return self._settle(incoming, hashlib.sha256(data).hexdigest())
        finally:
            _remove(incoming)

    def _put_tree(self, source: str) -> str:
        incoming = tempfile.mkdtemp(dir=self.tmp, prefix="incoming-")
        try:
            manifest = []
            for rel in _tree_files(source):
                target = os.path.join(incoming, rel)
                make_private_dir(os.path.dirname(target))
                with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                    manifest.append(f"{rel}\0{_copy_hashing(os.path.join(source, rel), out)}\n".encode())
            if not manifest:
                raise BlobError("ARTIFACT_EMPTY", f"directory '{source}' holds no file")
            return self._settle(incoming, hashlib.sha256(TREE_PREFIX + b"".join(manifest)).hexdigest())
        finally:
            _remove(incoming)

    def _settle(self, incoming: str, hexdigest: str) -> str:
        """Move a finished copy to its final name, unless the same content is there already."""
        final = os.path.join(self.dir, hexdigest)
        if not os.path.exists(final):
            try:
                os.rename(incoming, final)
            except OSError:   # another process settled the same content first (a directory cannot be replaced)
                if not os.path.exists(final):
                    raise
        return f"sha256:{hexdigest}"


def _copy_hashing(source: str, out) -> str:
    """Copy source's bytes into the open file `out` (synced to disk); returns their sha256 hex digest."""
    digest = hashlib.sha256()
    with open(source, "rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


def _tree_files(source: str) -> list[str]:
    """Relative paths of the regular files under a directory, sorted; a symlink is refused, since the blob would
    otherwise hold whatever it points to, now or later."""
    found = []
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in dirs + files:
            full = os.path.join(root, name)
            if os.path.islink(full) or not (os.path.isdir(full) or os.path.isfile(full)):
                raise BlobError("ARTIFACT_INVALID", f"'{full}' is a symlink or special file; "
                                                    "a model directory holds regular files only")
        found.extend(os.path.relpath(os.path.join(root, name), source) for name in files)
    return sorted(found)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
