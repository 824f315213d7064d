"""Descriptors received over HTTP: stored content-addressed, unpacked safely, and checked confined to their own
bundle in a worker process with a time limit, so a request can neither read server files nor hog the server."""

from __future__ import annotations

import atexit
import hashlib
import io
import multiprocessing
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from typing import Any

from orchestrator.api.errors import ApiError
from orchestrator.api.handover import freeze

DEFAULT_ENTRY = "descriptor.yaml"
MAX_MEMBERS = 1000
MAX_NAME_BYTES = 1024      # a member's path inside the bundle
MAX_COMPONENT_BYTES = 255  # one file or directory name (NAME_MAX of the file systems Strato runs on)
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
WORKER_MEMORY_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    """A descriptor and the files beside it, stored under its content digest."""

    directory: str
    entry: str
    digest: str

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.entry)

    def public(self) -> dict:
        return {"digest": self.digest, "entry": self.entry}


def _member_name(name: str) -> str:
    """A safe relative path inside the bundle that this machine can store, or a 400 naming the offending member."""
    raw = name.replace("\\", "/")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if raw.startswith("/") or not parts or ".." in parts or ":" in parts[0] or "\0" in raw:
        raise ApiError(400, "BUNDLE_MEMBER_REFUSED", f"bundle member '{_printable(name)}' is not a relative "
                                                     "path inside the bundle")
    try:
        sizes = [len(p.encode("utf-8")) for p in parts]
    except UnicodeEncodeError:  # a tar name in another encoding comes back with lone surrogates
        raise ApiError(400, "BUNDLE_MEMBER_REFUSED", f"bundle member '{_printable(name)}' is not named in "
                                                     "UTF-8") from None
    if max(sizes) > MAX_COMPONENT_BYTES or sum(sizes) + len(sizes) > MAX_NAME_BYTES:
        raise ApiError(400, "BUNDLE_MEMBER_REFUSED", f"bundle member '{_printable(name)}' has a name longer than "
                                                     f"{MAX_COMPONENT_BYTES} bytes or a path longer than "
                                                     f"{MAX_NAME_BYTES} bytes")
    return "/".join(parts)


def _check_tree(names) -> None:
    """400 when one member is a file and also a directory of others ('x' and 'x/y.txt')."""
    directories = {name.rsplit("/", i)[0] for name in names for i in range(1, name.count("/") + 1)}
    both = sorted(directories.intersection(names))
    if both:
        raise ApiError(400, "BUNDLE_MEMBER_REFUSED", f"bundle member '{_printable(both[0])}' is both a file and a "
                                                     "directory of other members")


def _unreadable(what: str) -> ApiError:
    return ApiError(400, "BUNDLE_UNREADABLE", f"{what} cannot be read: the archive is damaged, encrypted or uses "
                                              "a compression method Strato does not read")


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:200]


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "TEXT_NOT_UTF8", f"the {what} is not valid Unicode text (it holds a lone surrogate)")


def _members(data: bytes):
    """(name, bytes) of every regular file of a zip or tar (gz/bz2/xz) archive; links and devices are refused."""
    total = 0
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except Exception:  # noqa: BLE001 - zipfile's many ways of saying the directory is damaged
            raise ApiError(400, "BUNDLE_UNREADABLE", "the bundle is not a readable zip archive") from None
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ApiError(413, "BUNDLE_TOO_MANY_FILES", f"the bundle holds more than {MAX_MEMBERS} files")
        for info in infos:
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zip writers often leave the type bits 0
                raise ApiError(400, "BUNDLE_MEMBER_REFUSED",
                               f"bundle member '{_printable(info.filename)}' is not a regular file")
            total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                raise ApiError(413, "BUNDLE_TOO_LARGE", f"the bundle unpacks to more than "
                                                        f"{MAX_UNPACKED_BYTES // 2**20} MiB")
            try:
                content = archive.read(info)
            except Exception:  # noqa: BLE001 - bad CRC, a size that lies, an unknown method, a password
                raise _unreadable(f"bundle member '{_printable(info.filename)}'") from None
            yield info.filename, content
        return
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError):
        raise ApiError(400, "BUNDLE_UNREADABLE", "the bundle is neither a zip nor a tar archive") from None
    with archive:
        count = 0
        try:
            for member in archive:
                count += 1
                if count > MAX_MEMBERS:
                    raise ApiError(413, "BUNDLE_TOO_MANY_FILES", f"the bundle holds more than {MAX_MEMBERS} files")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ApiError(400, "BUNDLE_MEMBER_REFUSED",
                                   f"bundle member '{_printable(member.name)}' is not a regular file")
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise ApiError(413, "BUNDLE_TOO_LARGE", f"the bundle unpacks to more than "
                                                            f"{MAX_UNPACKED_BYTES // 2**20} MiB")
                yield member.name, archive.extractfile(member).read()
        except ApiError:
            raise
        except Exception:  # noqa: BLE001 - tarfile's and the decompressors' many ways of saying it is damaged
            raise _unreadable("the tar archive") from None


class BundleStore:
    """Bundles under ROOT/<sha256>/; the same content is stored once and never changes afterwards."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(os.path.join(root, ".incoming"), mode=0o700, exist_ok=True)

    def _scratch(self) -> str:
        return tempfile.mkdtemp(dir=os.path.join(self.root, ".incoming"))

    def unpack(self, text: str | None = None, archive: bytes | None = None, entry: str | None = None,
               keep: bool = True) -> Bundle:
        """Write a descriptor text or an archive's files to a bundle (kept by digest, or a scratch one)."""
        scratch = self._scratch()
        try:
            digest = hashlib.sha256()
            if text is not None:
                entry = _member_name(entry or DEFAULT_ENTRY)
                files = {entry: _utf8(text, "descriptor")}
            else:
                files = {}
                for name, content in _members(archive or b""):
                    files[_member_name(name)] = content
                _check_tree(files)
                entry = self._entry(files, entry)
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
                target = os.path.join(scratch, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "xb") as fh:
                    fh.write(files[name])
            bundle_digest = digest.hexdigest()
            if not keep:
                return Bundle(scratch, entry, bundle_digest)
            final = os.path.join(self.root, bundle_digest)
            if os.path.isdir(final):
                shutil.rmtree(scratch, ignore_errors=True)
            else:
                try:
                    os.rename(scratch, final)
                except OSError:  # stored meanwhile by a concurrent request with the same content
                    shutil.rmtree(scratch, ignore_errors=True)
            return Bundle(final, entry, bundle_digest)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    @staticmethod
    def _entry(files: dict[str, bytes], entry: str | None) -> str:
        if entry is not None:
            entry = _member_name(entry)
            if entry not in files:
                raise ApiError(400, "BUNDLE_ENTRY_MISSING", f"the bundle has no file '{_printable(entry)}'")
            return entry
        top = sorted(n for n in files if "/" not in n and n.endswith((".yaml", ".yml")))
        if len(top) != 1:
            raise ApiError(400, "BUNDLE_ENTRY_AMBIGUOUS",
                           "say which file is the descriptor with 'entry' (top-level YAML files: "
                           f"{', '.join(top) or 'none'})")
        return top[0]

    def discard(self, bundle: Bundle) -> None:
        if os.path.dirname(bundle.directory) != self.root:
            shutil.rmtree(bundle.directory, ignore_errors=True)

    def find(self, descriptor_path: str | None) -> Bundle | None:
        """The bundle a stored infrastructure's descriptor lies in (None for one built from a CLI file)."""
        if not descriptor_path:
            return None
        directory = os.path.realpath(self.root)
        real = os.path.realpath(descriptor_path)
        if not real.startswith(directory + os.sep):
            return None
        digest, _, entry = os.path.relpath(real, directory).partition(os.sep)
        return Bundle(os.path.join(self.root, digest), entry, digest)


# --- the check, run in a worker process ------------------------------------------------------------------


def _worker_init() -> None:
    from descriptors.loader import ALLOW_IMPORTS_ENV
    os.environ.pop(ALLOW_IMPORTS_ENV, None)  # an HTTP descriptor imports only from its own bundle
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    # Load the engine and the built-in profiles now, so a check's time limit measures only the check.
    import networkx  # noqa: F401 - the graph check's library, the slowest import of a first check
    from descriptors.types import builtin_registry
    import orchestrator.service  # noqa: F401
    from orchestrator.api.boundary import warm_up
    builtin_registry()
    warm_up()


def _ready() -> bool:
    return True


def check(directory: str, entry: str, inputs: dict[str, Any] | None, stored_inputs: dict | None = None,
          keep_loaded: bool = False) -> dict:
    """Load, validate and graph-check a bundle's descriptor; with inputs, also the instance counts; with
    keep_loaded, also what was loaded (handover.freeze), so the server does not parse it again."""
    from descriptors.diagnostics import DescriptorError
    from descriptors.loader import resolve_inputs
    from orchestrator import service
    from orchestrator.api.boundary import host_code, outside_paths
    try:
        loaded = service.load_checked(os.path.join(directory, entry))
        template = loaded.template
        root = os.path.realpath(directory)
        outside = [p for p in template.imports if not os.path.realpath(p).startswith(root + os.sep)]
        if outside:
            return {"ok": False, "diagnostics": [{"code": "IMPORT_OUTSIDE", "severity": "error", "file": entry,
                                                  "line": 0, "col": 0, "path": "imports", "hint": "",
                                                  "message": "an import lies outside the bundle"}]}
        values = None
        if inputs is not None:
            merged = {k: v for k, v in (stored_inputs or {}).items() if k in template.inputs}
            merged.update(inputs)
            values = resolve_inputs(template, merged, source="<request inputs>")
        outside_files = outside_paths(template, directory, values)
        if outside_files:
            return {"ok": False, "diagnostics": outside_files}
        result = {"ok": True, "nodes": len(template.node_templates),
                  "diagnostics": [d.to_dict() for d in template.warnings],
                  "host_code": host_code(template, values)}
        if values is not None:
            result["counts"] = {n: node.instance_count(values) for n, node in template.node_templates.items()}
        if keep_loaded:
            result["loaded"] = freeze(loaded)
        return result
    except DescriptorError as exc:
        return {"ok": False, "diagnostics": [d.to_dict() for d in exc.diagnostics]}


class CheckPool:
    """Worker processes for checks: a check over its time limit is killed with its pool, not left running."""

    def __init__(self, processes: int = 2):
        self.processes = processes
        self._pool = None
        self._lock = threading.Lock()

    def run(self, directory: str, entry: str, inputs: dict | None, stored_inputs: dict | None,
            timeout: float, keep_loaded: bool = False) -> dict:
        with self._lock:
            if self._pool is None:
                ctx = multiprocessing.get_context("forkserver")
                self._pool = ctx.Pool(self.processes, initializer=_worker_init)
                self._pool.apply(_ready)  # started and initialised: not counted against a check's time
            pool = self._pool
        pending = pool.apply_async(check, (directory, entry, inputs, stored_inputs, keep_loaded))
        try:
            return pending.get(timeout)
        except multiprocessing.TimeoutError:
            with self._lock:
                if self._pool is pool:
                    pool.terminate()
                    self._pool = None
            raise ApiError(422, "VALIDATION_TIMEOUT", f"checking the descriptor took longer than {timeout:g} s")

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None


_shared: dict[int, CheckPool] = {}


def shared_pool(processes: int) -> CheckPool:
    """One pool per size for the whole process (apps made by tests share it); closed when Python exits."""
    if processes not in _shared:
        _shared[processes] = CheckPool(processes)
        if len(_shared) == 1:
            atexit.register(lambda: [p.close() for p in _shared.values()])
    return _shared[processes]


def relativize(diagnostics: list[dict], directory: str) -> list[dict]:
    """Name files by their path inside the bundle; the server's directories never reach the client."""
    prefixes = sorted({directory, os.path.realpath(directory)}, key=len, reverse=True)

    def strip(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for prefix in prefixes:
            text = text.replace(prefix + os.sep, "").replace(prefix, ".")
        return text

    return [{k: strip(v) for k, v in d.items()} for d in diagnostics]
