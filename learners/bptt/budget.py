"""The words a BPTT setting is written in, shared by the config and the planner: the
checkpointed modes, the planner's cap on memory units, and memory sizes such as ``"2GiB"``.

Torch-free and planner-free, so that validating a config imports neither.
"""

from __future__ import annotations

import re

MODES = ("hsm", "ism", "msm")  # the checkpointed modes: the one list (config, unroll, planner, bench)

MAX_UNITS = 512  # the planner's default cap on the memory units of its programme

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}


def parse_bytes(text: str | int | float) -> int:
    """``"2GiB"`` -> 2147483648, ``"512MiB"``, ``"1.5 GB"`` (SI), ``"4096"``; ints pass through."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a byte count must be >= 0, got {text}")
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(
            f"cannot read {text!r} as a memory size; use e.g. '512MiB', '2GiB', '1.5GB' or '4096'"
        )
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])
