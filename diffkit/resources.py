"""Memory and disk estimates made before allocating, so an impossible request is refused
with its size instead of crashing the machine half-way."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

FLOAT = 4  # bytes of a float32


class ResourceError(RuntimeError):
    """A request that cannot fit in this machine's memory or disk; one line."""


def available_memory() -> int:
    """Bytes a new allocation can get: the RAM the kernel reports available
    (``MemAvailable``; all RAM where unknown), and no more than this process's address-space
    limit (``ulimit -v``) leaves above what it has mapped already."""
    return min(_ram_available(), _address_space_left())


def _ram_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _address_space_left() -> int:
    """``RLIMIT_AS`` minus the process's virtual size (``VmSize``); unlimited: 2^62."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return 1 << 62
    if limit == resource.RLIM_INFINITY or limit < 0:
        return 1 << 62
    used = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, limit - used)


def free_disk(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 1 << 62


def human_bytes(n: float) -> str:
    try:
        n = float(n)
    except OverflowError:  # an integer past float range: -n 10**400
        return "more than 1e+290 PB"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(need: float, what: str, available: int | None = None) -> None:
    """Refuse ``need`` bytes of RAM for ``what`` if this machine does not have them."""
    have = available_memory() if available is None else available
    if need > have:
        raise ResourceError(
            f"{what} needs about {human_bytes(need)} of memory; {human_bytes(have)} is available"
        )


def sampling_bytes(sample_shape: Sequence[int], image_shape: Sequence[int], *, rows: int = 1,
                   row_extra: int = 0) -> int:  # fmt: skip
    """Bytes of memory one image costs while a sampler draws it: the float32 noise and the
    sampler's few working copies of the model's sample (``sample_shape``); for each of the
    network's ``rows`` rows per image (2 under classifier-free guidance, times the prompts
    of a composed edit) its input, output and combination copy plus ``row_extra`` (a
    ControlNet's hint, prompt embeddings, feature maps); and the decoded image
    (``image_shape``) twice."""
    latent = FLOAT * math.prod(sample_shape)
    return 6 * latent + rows * (3 * latent + row_extra) + 2 * FLOAT * math.prod(image_shape)


def check_disk(need: float, folder: Path, what: str) -> None:
    """Refuse to write ``need`` bytes under ``folder`` if its disk has less free."""
    have = free_disk(folder)
    if need > have:
        raise ResourceError(
            f"{what} needs about {human_bytes(need)} of disk; {human_bytes(have)} is free "
            f"at {folder}"
        )


def available_cpus() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup (v2) CPU
    quota where one is set (a container given 2 CPUs on a 64-core host sees 64 cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores
