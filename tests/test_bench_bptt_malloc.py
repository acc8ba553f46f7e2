"""The BPTT benchmark keeps freed memory in the process on CPU (benchmarks.bptt.keep_freed_memory),
so that no method's time includes page faults for blocks the allocator gave back to the OS.
Checked by what the kernel reports: the resident set after freeing 256 MiB of tensors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and calls glibc")

FREE_AND_MEASURE = """
import os, sys, torch
from benchmarks.bptt import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident_bytes():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
blocks = [torch.ones(2 * 2**20) for _ in range(32)]  # 32 blocks of 8 MiB, every page touched
held = resident_bytes()
del blocks
print((held - resident_bytes()) / 2**20)
"""


def released_mib(setting: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", FREE_AND_MEASURE, setting], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return float(done.stdout.strip().splitlines()[-1])


def test_freed_blocks_stay_resident_only_when_kept():
    assert released_mib("default") > 200  # glibc unmaps blocks this large when they are freed
    assert released_mib("keep") < 16
