"""diffkit.resources: what this process may use of the machine."""

from __future__ import annotations

import os
from pathlib import Path

from diffkit import resources


def test_available_cpus_is_the_affinity_mask_capped_by_the_cgroup_quota(monkeypatch, tmp_path):
    assert 1 <= resources.available_cpus() <= (os.cpu_count() or 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    quota = tmp_path / "cpu.max"
    real_path = Path

    def fake_path(p, *rest):
        return quota if str(p) == "/sys/fs/cgroup/cpu.max" else real_path(p, *rest)

    monkeypatch.setattr(resources, "Path", fake_path)
    quota.write_text("200000 100000\n")  # docker --cpus 2
    assert resources.available_cpus() == 2
    quota.write_text("max 100000\n")  # no quota: the affinity mask
    assert resources.available_cpus() == 64
    quota.write_text("50000 100000\n")  # half a core still runs one thread
    assert resources.available_cpus() == 1


def test_available_memory_respects_the_address_space_limit(monkeypatch):
    """Under ``ulimit -v`` an allocation can only get what the limit leaves above the
    process's mapped size, however much RAM is free."""
    import resource

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (vm + (1 << 30), -1))
    assert 0 < resources.available_memory() <= 1 << 30
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, -1))
    assert resources.available_memory() == resources._ram_available()
