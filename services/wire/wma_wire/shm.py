"""Decoded frames between processes on one host, through POSIX shared memory.

The Open Inference Protocol's system shared memory extension, as Triton defines
it: a client writes a tensor into a shared-memory region, registers the region
with the server once (``POST /v2/systemsharedmemory/region/{name}/register``
``{"key", "offset", "byte_size"}``) and then names it in an input's parameters
(``shared_memory_region``, ``shared_memory_offset``, ``shared_memory_byte_size``)
instead of sending the bytes.

:class:`PixelArena` is the writer's side (the gateway): fixed-size slots in one
region it creates and owns, mode 0600 in ``/dev/shm`` (RAM, never a disk),
removed when it closes. :class:`RegionRegistry` is the reader's side (the model
server): the regions registered with it, mapped read-only; :meth:`~RegionRegistry.read`
copies a tensor's bytes out, so what the server scores cannot change under it.
Only regular files of this process's own user are mapped, by a plain name
(no path) under the one directory.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wma_wire.errors import LimitExceededError
from wma_wire.tensors import ProtocolError

__all__ = [
    "NAME_PATTERN",
    "SHM_DIR",
    "UNKNOWN_REGION",
    "PixelArena",
    "RegionRegistry",
    "Slot",
    "region_path",
]

SHM_DIR = Path("/dev/shm")
# Region names and keys: a plain file name, never a path.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
# The start of a reader's error for a region it does not know (e.g. it restarted):
# the writer then registers again.
UNKNOWN_REGION = "unknown shared memory region"
_ARENA_PREFIX = "wma-gw-"
_STALE = re.compile(rf"^{_ARENA_PREFIX}(\d+)-[0-9a-f]+$")


def region_path(key: str, directory: Path = SHM_DIR) -> Path:
    """The file of a region's ``key``; :class:`ProtocolError` for anything but a plain name."""
    if not isinstance(key, str) or not _NAME.match(key):
        raise ProtocolError(f"shared memory key must match {NAME_PATTERN}, got {key!r}")
    return directory / key


@dataclass(frozen=True)
class Slot:
    """``nbytes`` at ``offset`` of an arena, held by one request until released."""

    index: int
    offset: int
    nbytes: int
    array: np.ndarray[Any, np.dtype[np.uint8]]  # writable, flat, over the slot's bytes


class PixelArena:
    """``slots`` slots of ``slot_bytes`` each in one shared-memory region of this process.

    The region's file exists from construction to :meth:`close`. Its pages are
    reserved at construction (``posix_fallocate``): a tmpfs that fills up later
    (Docker's 64 MiB ``/dev/shm``) refuses the arena at start, with ENOSPC,
    instead of killing the process with SIGBUS at a write. :meth:`acquire` hands out a free
    slot (None when all are held or the tensor is larger than a slot: the caller
    then sends the frames themselves). Thread-safe.
    """

    def __init__(self, slots: int, slot_bytes: int, directory: Path = SHM_DIR) -> None:
        if slots < 1 or slot_bytes < 1:
            raise ValueError("a pixel arena needs at least one slot of at least one byte")
        remove_stale_arenas(directory)
        self.key = f"{_ARENA_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        self.path = directory / self.key
        self.slot_bytes = slot_bytes
        self.size = slots * slot_bytes
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, self.size)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        self._bytes = np.frombuffer(self._map, dtype=np.uint8)
        self._free = list(range(slots - 1, -1, -1))  # LIFO: the warmest slot first
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The region's name in OIP requests (its key: one name per arena)."""
        return self.key

    def acquire(self, nbytes: int) -> Slot | None:
        if not 0 < nbytes <= self.slot_bytes:
            return None
        with self._lock:
            if not self._free or self._map is None:
                return None
            index = self._free.pop()
        offset = index * self.slot_bytes
        return Slot(index, offset, nbytes, self._bytes[offset : offset + nbytes])

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._free.append(slot.index)

    @property
    def free_slots(self) -> int:
        with self._lock:
            return len(self._free)

    def close(self) -> None:
        """Remove the region's file; the memory goes once no view of it is left."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._map = None  # views still held (a late slot) keep the mapping alive


def remove_stale_arenas(directory: Path = SHM_DIR) -> list[Path]:
    """Remove the arenas of this user's gateways that died without closing theirs
    (a SIGKILL leaves the file, and the frames last written to it)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _STALE.match(entry.name)
        if match is None:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or _alive(pid):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Region:
    key: str
    offset: int
    byte_size: int
    fd: int
    mapping: mmap.mmap


class RegionRegistry:
    """The shared-memory regions registered with a server, mapped read-only.

    At most ``max_regions``; registering a name again replaces it, and a region
    whose file its owner has removed (a gateway that stopped) is dropped at the
    next registration. One :meth:`read` copies at most ``max_read_bytes``. Errors
    are :class:`ProtocolError` (400) naming the problem.
    """

    def __init__(
        self, max_regions: int = 16, max_read_bytes: int = 2**30, directory: Path = SHM_DIR
    ) -> None:
        self.max_regions = max_regions
        self.max_read_bytes = max_read_bytes
        self.directory = directory
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProtocolError(f"region name must match {NAME_PATTERN}, got {name!r}")
        path = region_path(key, self.directory)
        for label, value in (("offset", offset), ("byte_size", byte_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProtocolError(f"'{label}' must be an integer >= 0")
        if byte_size == 0:
            raise ProtocolError("'byte_size' must be at least 1")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise ProtocolError(f"cannot open shared memory key {key!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise ProtocolError(f"shared memory key {key!r} is not a region of this user")
            if offset + byte_size > info.st_size:
                raise ProtocolError(
                    f"region {name!r}: offset {offset} + byte_size {byte_size} is past the "
                    f"end of {key!r} ({info.st_size} bytes)"
                )
            mapping = mmap.mmap(fd, offset + byte_size, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            self._prune()
            old = self._regions.pop(name, None)
            if old is None and len(self._regions) >= self.max_regions:
                self._close(_Region(key, offset, byte_size, fd, mapping))
                raise ProtocolError(
                    f"{self.max_regions} shared memory regions are registered already; "
                    "unregister one first"
                )
            self._regions[name] = _Region(key, offset, byte_size, fd, mapping)
        if old is not None:
            self._close(old)

    def unregister(self, name: str | None = None) -> list[str]:
        """Forget ``name`` (every region when None); the names forgotten."""
        with self._lock:
            names = (
                list(self._regions) if name is None else [n for n in (name,) if n in self._regions]
            )
            gone = [self._regions.pop(n) for n in names]
        for region in gone:
            self._close(region)
        return names

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._regions.items())
        return [
            {"name": n, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for n, r in items
            if name is None or n == name
        ]

    def read(self, name: object, offset: object, size: object) -> bytes:
        """A copy of ``size`` bytes at ``offset`` of region ``name``."""
        if not isinstance(name, str):
            raise ProtocolError("'shared_memory_region' must be a string")
        for label, value in (("offset", offset), ("byte_size", size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProtocolError(f"'shared_memory_{label}' must be an integer >= 0")
        assert isinstance(offset, int) and isinstance(size, int)
        if size > self.max_read_bytes:
            raise LimitExceededError(
                f"shared memory input of {size} bytes is over this server's "
                f"{self.max_read_bytes} (max_request_pixels x 3)"
            )
        with self._lock:
            region = self._regions.get(name)
            if region is None:
                raise ProtocolError(f"{UNKNOWN_REGION} {name!r}: register it first")
            if offset + size > region.byte_size:
                raise ProtocolError(
                    f"offset {offset} + byte_size {size} is past the end of region {name!r} "
                    f"({region.byte_size} bytes)"
                )
            start = region.offset + offset
            # A file cut short under a mapping faults on read: check it is still whole.
            if os.fstat(region.fd).st_size < start + size:
                raise ProtocolError(f"shared memory region {name!r} was truncated by its owner")
            return region.mapping[start : start + size]

    def close(self) -> None:
        self.unregister(None)

    def _prune(self) -> None:
        for name, region in list(self._regions.items()):
            if os.fstat(region.fd).st_nlink == 0:  # its owner removed the file
                self._close(self._regions.pop(name))

    @staticmethod
    def _close(region: _Region) -> None:
        os.close(region.fd)
        region.mapping.close()
