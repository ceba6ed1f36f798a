"""A minimal inotify watcher (Linux, ctypes; no extra package): did anything open, read, write,
create, delete or move a file in a directory tree while a block ran?"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_OPEN = 0x1, 0x2, 0x4, 0x8, 0x20
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_DELETE_SELF = 0x40, 0x80, 0x100, 0x200, 0x400
IN_NONBLOCK = 0o4000
ALL = IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_OPEN | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | \
    IN_DELETE | IN_DELETE_SELF
NAMES = {IN_ACCESS: "read", IN_MODIFY: "write", IN_ATTRIB: "attrib", IN_CLOSE_WRITE: "close-write", IN_OPEN: "open",
         IN_MOVED_FROM: "moved-from", IN_MOVED_TO: "moved-to", IN_CREATE: "create", IN_DELETE: "delete",
         IN_DELETE_SELF: "delete-self"}
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class Watch:
    """``with Watch(dir) as w: ...`` then ``w.events``: [(path, what)] seen under ``dir``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events: list[tuple[str, str]] = []

    def __enter__(self) -> Watch:
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.wds = {}
        for d in [self.root, *(p for p in self.root.rglob("*") if p.is_dir() and not p.is_symlink())]:
            wd = _libc.inotify_add_watch(self.fd, str(d).encode(), ALL)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self.wds[wd] = d
        return self

    def __exit__(self, *exc) -> None:
        try:
            while True:
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                i = 0
                while i < len(data):
                    wd, mask, _cookie, length = struct.unpack_from("iIII", data, i)
                    name = data[i + 16:i + 16 + length].rstrip(b"\0").decode(errors="replace")
                    i += 16 + length
                    what = ",".join(n for bit, n in NAMES.items() if mask & bit)
                    if what:
                        self.events.append((str(self.wds.get(wd, "?")) + (f"/{name}" if name else ""), what))
        finally:
            os.close(self.fd)
