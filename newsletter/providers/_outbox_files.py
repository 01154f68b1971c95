"""The outbox's files on disk: each batch's messages written to temporary files (0600), made
durable, then moved into place, so a file exists exactly when its message was written whole;
what a killed writer left behind is recognised by the process id in its name."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

from newsletter.processes import process_gone

FILE_MODE = 0o600  # the files hold each subscriber's unsubscribe token
FOLDER_MODE = 0o700


def _load_syncfs():
    """Linux syncfs(2): flushes one file system, once per batch instead of once per file."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def write_file(dir_fd: int, name: str, pieces: list[bytes]) -> None:
    """Create (or truncate) `name` in the open folder `dir_fd`, 0600, and write all of
    `pieces`. Names relative to the folder spare the kernel a path walk per file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fd = os.open(name, flags, FILE_MODE, dir_fd=dir_fd)
    try:
        written = os.writev(fd, pieces) if len(pieces) <= _IOV_MAX else 0
        if written == sum(map(len, pieces)):
            return  # the common case: one call, no copy of the message
        view = memoryview(b"".join(pieces))[written:]
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def make_folder(folder: Path) -> None:
    """Create the folder (and the outbox above it) private to the owner."""
    if not folder.parent.exists():
        folder.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    folder.mkdir(mode=FOLDER_MODE, exist_ok=True)


def open_folder(folder: Path) -> int:
    """The folder, created if need be, open for the `*at` calls of one batch."""
    make_folder(folder)
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def durable(dir_fd: int, written: list[tuple[str, str]]) -> None:
    """Move the written temporary files into place so that a file exists only once it is
    complete, and the batch is on disk before the delivery log says it was sent: the data
    is flushed (one syncfs for the batch), then renamed, then the folder is flushed."""
    if not written:
        return
    if _SYNCFS is None or _SYNCFS(dir_fd) != 0:
        for temporary, _ in written:  # no syncfs here: one fsync per file
            fd = os.open(temporary, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for temporary, target in written:
        # A reader never sees half a message.
        os.replace(temporary, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def discard(dir_fd: int | None, written: list[tuple[str, str]]) -> None:
    """Nothing of a failed batch is left half-done: its temporary files go."""
    if dir_fd is None:
        return
    for temporary, _ in written:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def dead_writer(temporary: str) -> bool:
    """Whether the process that was writing `.NAME.PID.tmp` is gone."""
    pid = temporary.rsplit(".", 2)[-2]
    return pid.isdigit() and process_gone(int(pid))
