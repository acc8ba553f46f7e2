#!/usr/bin/env bash
# One benchmark, two commits, side by side in one session: BASE and HEAD take turns, ROUNDS
# times each, so that whatever else the machine is doing weighs on both alike.
#
#   bash benchmarks/compare_commits.sh BASE [ROUNDS] -- COMMAND ...
#
# COMMAND runs in a clean worktree of each commit, with the checkout's .venv and PYTHONPATH
# set to that worktree; "{json}" in COMMAND becomes the run's JSON path. The JSON files go to
# benchmarks/out/compare/BASE_vs_HEAD/, and benchmarks/compare_json.py prints every number the
# two sides share: the median of each side and HEAD / BASE.
#
# Example: bash benchmarks/compare_commits.sh 394e6f1 2 -- python -m benchmarks.bptt --quick --json {json}
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
base=$(git -C "$repo" rev-parse --short "${1:?usage: compare_commits.sh BASE [ROUNDS] -- COMMAND}")
shift
rounds=1
if [[ $# -gt 0 && $1 != "--" ]]; then rounds=$1; shift; fi
[[ ${1:-} == "--" ]] || { echo "compare_commits.sh: expected -- before the command" >&2; exit 2; }
shift
[[ $# -gt 0 ]] || { echo "compare_commits.sh: no command given" >&2; exit 2; }
head=$(git -C "$repo" rev-parse --short HEAD)
python="$repo/.venv/bin/python"
out="$repo/benchmarks/out/compare/${base}_vs_${head}"
mkdir -p "$out"

trees=()
cleanup() { for tree in "${trees[@]}"; do git -C "$repo" worktree remove --force "$tree" 2>/dev/null || true; done; }
trap cleanup EXIT
for commit in "$base" "$head"; do
  tree=$(mktemp -d "/tmp/compare-$commit-XXXX")
  git -C "$repo" worktree add --quiet --detach "$tree" "$commit"
  trees+=("$tree")
done

for round in $(seq 1 "$rounds"); do
  for side in 0 1; do
    tree=${trees[$side]}
    label=$([[ $side == 0 ]] && echo "base-$base" || echo "head-$head")
    json="$out/$label-$round.json"
    command=()
    for word in "$@"; do
      word=${word//\{json\}/$json}
      [[ $word == python ]] && word=$python
      command+=("$word")
    done
    echo "== round $round/$rounds: $label" >&2
    (cd "$tree" && PYTHONPATH="$tree" "${command[@]}") > "$out/$label-$round.log" 2>&1 || {
      echo "compare_commits.sh: $label round $round failed; see $out/$label-$round.log" >&2; exit 1; }
  done
done
"$python" "$repo/benchmarks/compare_json.py" "$out" "base-$base" "head-$head"
