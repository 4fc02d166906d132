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
