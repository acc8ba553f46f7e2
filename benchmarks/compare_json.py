"""Print the numbers two sets of benchmark JSON files share, side by side.

``python benchmarks/compare_json.py FOLDER BASE_PREFIX HEAD_PREFIX`` reads ``FOLDER/BASE_PREFIX-*.json``
and ``FOLDER/HEAD_PREFIX-*.json`` (one file per round, as ``benchmarks/compare_commits.sh``
writes them), flattens each to ``path -> number`` (a list of records is keyed by the first of
``name``, ``label``, ``mode``, ``config`` a record has), and prints the median of each side
and their ratio for every path both sides have.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

KEYS = ("name", "label", "mode", "config")


def flatten(value, prefix: str = "") -> dict[str, float]:
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    if isinstance(value, dict):
        flat: dict[str, float] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            name = next((str(item[k]) for k in KEYS if isinstance(item, dict) and k in item), str(index))
            flat.update(flatten(item, f"{prefix}[{name}]"))
        return flat
    return {}


def medians(files: list[Path]) -> dict[str, float]:
    runs = [flatten(json.loads(path.read_text())) for path in files]
    shared = set.intersection(*(set(run) for run in runs)) if runs else set()
    return {key: statistics.median(run[key] for run in runs) for key in shared}


def main(argv: list[str]) -> int:
    folder, base_prefix, head_prefix = Path(argv[0]), argv[1], argv[2]
    base = medians(sorted(folder.glob(f"{base_prefix}-*.json")))
    head = medians(sorted(folder.glob(f"{head_prefix}-*.json")))
    keys = sorted(set(base) & set(head))
    if not keys:
        print(f"no numbers shared by {base_prefix} and {head_prefix} in {folder}", file=sys.stderr)
        return 1
    width = max(len(key) for key in keys)
    print(f"{'':{width}}  {base_prefix:>16}  {head_prefix:>16}  head/base")
    for key in keys:
        ratio = head[key] / base[key] if base[key] else float("nan")
        print(f"{key:{width}}  {base[key]:16.6g}  {head[key]:16.6g}  {ratio:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
