"""A small ext4 file system on a loop device, for disk-full and failing-device tests.

`LoopFs(size_mib)` makes a sparse image, formats it and mounts it on a temporary directory;
`close()` unmounts and removes everything. Needs root (mount); `why_unavailable()` says why not
when it cannot run, for the test's skip reason.

`backing_limit_mib`: when given, the image lives on its own tmpfs of that size, smaller than the
file system: ext4 believes it has room, but writes beyond the tmpfs fail in the loop driver, and
the kernel reports EIO to writeback and fsync: a failing device.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a loop device"
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/dev/loop-control").exists():
        return "no loop device support (/dev/loop-control)"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


class LoopFs:
    def __init__(self, size_mib: int, backing_limit_mib: int | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="kiln-loopfs-"))
        self.backing = self.root / "backing"
        self.backing.mkdir()
        self.mount_point = self.root / "mnt"
        self.mount_point.mkdir()
        self._tmpfs = False
        if backing_limit_mib is not None:
            _run("mount", "-t", "tmpfs", "-o", f"size={backing_limit_mib}m", "tmpfs", str(self.backing))
            self._tmpfs = True
        self.image = self.backing / "fs.img"
        with open(self.image, "wb") as f:
            f.truncate(size_mib << 20)
        # No journal: a failing device then shows as write and fsync errors, not as a
        # journal abort that remounts the file system read-only first.
        _run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", str(self.image))
        _run("mount", "-o", "loop", str(self.image), str(self.mount_point))

    def repair(self, backing_limit_mib: int) -> None:
        """The device works again: the backing store grows to `backing_limit_mib`, the file
        system is unmounted, checked (`e2fsck -fy`) and mounted again."""
        if self._tmpfs:
            _run("mount", "-o", f"remount,size={backing_limit_mib}m", str(self.backing))
        subprocess.run(["umount", str(self.mount_point)], capture_output=True, timeout=60)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, timeout=120)
        _run("mount", "-o", "loop", str(self.image), str(self.mount_point))

    def free_bytes(self) -> int:
        st = os.statvfs(self.mount_point)
        return st.f_bavail * st.f_frsize

    def fill(self, path: Path, leave_bytes: int = 0) -> int:
        """Writes zeros to `path` until at most `leave_bytes` are free; returns bytes written."""
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(path, "wb") as f:
            while self.free_bytes() > leave_bytes + len(chunk):
                try:
                    f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    break
                written += len(chunk)
        return written

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount_point)], capture_output=True, timeout=60)
        if self._tmpfs:
            subprocess.run(["umount", "-l", str(self.backing)], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
