"""Tests of the BPTT-HSM/ISM/MSM planner (learners/bptt_plan.py) against independent references:
an exhaustive shortest-path search over *all* policies (not only the nested ones the DP
considers), and the paper's closed form for HSM."""

from __future__ import annotations

import heapq
import itertools

import pytest

from learners import bptt_plan
from learners.bptt.budget import parse_bytes
from learners.bptt_plan import BudgetTooSmallError, Op, hsm_closed_form, plan, plan_for_budget


def brute_force_cost(seq_len: int, memory: int, mode: str, alpha: int, chained_alpha: int | None = None) -> float:
    """Least cost of any policy, by Dijkstra over machine states.

    A machine state is (frontier, cursor, stored hidden positions, stored internal steps).
    Moves: advance the cursor one step (cost 1); move the cursor to a stored hidden state
    (h_0 is always stored) or to the output of a stored internal state (cost 0); store the
    cursor's hidden state (1 unit); compute step `cursor` and store its internal state
    (cost 1, alpha units); back-propagate step frontier-1 from the cursor (cost 1) or
    from its stored internal state (cost 0); free anything stored (cost 0). The memory in
    use (1 for h_0 + 1 per hidden + alpha per internal) may never exceed `memory`; an
    internal state whose input hidden state is held (h_0, a stored hidden state or the
    output of another stored internal state) costs `chained_alpha` instead, re-evaluated
    in every machine state (freeing its input makes it cost alpha again).
    Nothing here mirrors the DP's recursion: freeing order and split structure are free.
    """
    chained_alpha = alpha if chained_alpha is None else chained_alpha
    allow_hidden = mode in ("hsm", "msm")

    def units(hidden, internal) -> int:
        held = {0} | hidden | {step + 1 for step in internal}
        return 1 + len(hidden) + sum(chained_alpha if step in held else alpha for step in internal)

    allow_internal = mode in ("ism", "msm")
    start = (seq_len, 0, frozenset(), frozenset())
    best = {start: 0}
    queue = [(0, 0, start)]
    counter = itertools.count(1)
    while queue:
        cost, _, node = heapq.heappop(queue)
        if cost > best.get(node, float("inf")):
            continue
        frontier, cursor, hidden, internal = node
        if frontier == 0:
            return cost
        used = units(hidden, internal)
        moves = []
        for position in {0} | hidden | {step + 1 for step in internal}:
            moves.append((0, (frontier, position, hidden, internal)))
        if cursor is not None:
            if cursor + 1 < frontier:
                moves.append((1, (frontier, cursor + 1, hidden, internal)))
            if allow_hidden and cursor not in hidden and cursor != 0 and used + 1 <= memory:
                moves.append((0, (frontier, cursor, hidden | {cursor}, internal)))
            if allow_internal and cursor < frontier - 1 and cursor not in internal and units(hidden, internal | {cursor}) <= memory:
                moves.append((1, (frontier, cursor + 1, hidden, internal | {cursor})))
            if cursor == frontier - 1:
                moves.append((1, (frontier - 1, None, hidden, internal)))
        if frontier - 1 in internal:
            moves.append((0, (frontier - 1, None, hidden, internal - {frontier - 1})))
        for position in hidden:
            if units(hidden - {position}, internal) <= memory:
                moves.append((0, (frontier, cursor, hidden - {position}, internal)))
        for step in internal:
            if units(hidden, internal - {step}) <= memory:
                moves.append((0, (frontier, cursor, hidden, internal - {step})))
        for step_cost, successor in moves:
            new_cost = cost + step_cost
            if new_cost < best.get(successor, float("inf")):
                best[successor] = new_cost
                heapq.heappush(queue, (new_cost, next(counter), successor))
    return float("inf")


# alpha (the size of an internal state) does not enter HSM, so HSM is searched once.
@pytest.mark.parametrize(
    "mode,alpha", [("hsm", 1)] + [(mode, alpha) for mode in ("ism", "msm") for alpha in (1, 2, 3)]
)
def test_dp_equals_exhaustive_search_over_policies(mode, alpha):
    for seq_len in range(1, 7):
        for memory in range(1, 6):
            expected = brute_force_cost(seq_len, memory, mode, alpha)
            got = plan(seq_len, memory, mode, alpha=alpha).cost
            assert got == expected, (mode, alpha, seq_len, memory)


@pytest.mark.parametrize("mode,alpha,chained_alpha", [("ism", 2, 1), ("ism", 3, 2), ("msm", 3, 1), ("msm", 3, 2), ("msm", 4, 2)])
def test_dp_with_chained_internal_states_equals_exhaustive_search(mode, alpha, chained_alpha):
    for seq_len in range(1, 7):
        for memory in range(1, 9):
            expected = brute_force_cost(seq_len, memory, mode, alpha, chained_alpha)
            p = plan(seq_len, memory, mode, alpha=alpha, chained_alpha=chained_alpha)
            assert p.cost == expected, (mode, alpha, chained_alpha, seq_len, memory)
            assert p.peak_units <= memory
    # Chaining pays: with room for a chain but not for standalone internal states, plain
    # BPTT's cost is reached only with the chained size.
    assert plan(20, 1 + 19 * 2, "msm", alpha=3, chained_alpha=2).cost == 20
    assert plan(20, 1 + 19 * 2, "msm", alpha=3).cost > 20


def test_no_policy_beats_the_lower_bound_and_it_is_often_reached():
    tight = 0
    for alpha, chained_alpha in ((2, 1), (3, 2), (3, 1)):
        for seq_len in range(1, 7):
            for memory in range(1, 9):
                bound = bptt_plan.cost_lower_bound(seq_len, memory, 1, chained_alpha)
                best = brute_force_cost(seq_len, memory, "msm", alpha, chained_alpha)
                assert best >= bound, (alpha, chained_alpha, seq_len, memory)
                tight += best == bound and seq_len < bound < 2 * seq_len - 1  # neither trivial end
    assert tight >= 10
    for seq_len, memory in ((100, 12), (300, 40)):
        p = plan(seq_len, memory, "msm", alpha=5, chained_alpha=4)
        assert p.cost >= p.cost_lower_bound == 2 * seq_len - 1 - (memory - 1) // 4
    assert plan(50, 1 + 49 * 4, "msm", alpha=5, chained_alpha=4).cost_lower_bound == 50  # room for plain BPTT


def recurrence_tables(seq_len, memory, beta, alpha, mode, alpha1):
    """The module docstring's recurrence, one (t, m, move, y) at a time. Ties: the sweep
    first, then hidden states, then internal states, each from the smallest y."""
    INF = float("inf")
    Q = [[0 if m >= beta else INF for m in range(memory + 1)]]
    move, split = [[0] * (memory + 1)], [[0] * (memory + 1)]
    for t in range(1, seq_len + 1):
        row, row_move, row_split = [], [], []
        for m in range(memory + 1):
            options = [(t + Q[t - 1][m], 0, t)]  # (a)
            if mode in ("hsm", "msm") and m >= beta:
                options += [(y + Q[t - y][m - beta] + Q[y][m], 1, y) for y in range(1, t)]  # (b)
            if mode in ("ism", "msm"):
                for y in range(1, t):  # (c); at y = 1 the stored step is chained to the start
                    stored = alpha1 if y == 1 else alpha
                    if m >= stored:
                        options.append((y + Q[t - y][m - stored] + Q[y - 1][m], 2, y))
            value, kind, y = options[0]
            for option in options[1:]:
                if option[0] < value:
                    value, kind, y = option
            fits = m >= beta and value < INF
            row.append(value if fits else INF)
            row_move.append(kind)
            row_split.append(y)
        Q.append(row)
        move.append(row_move)
        split.append(row_split)
    return Q, move, split


@pytest.mark.parametrize("mode", ["hsm", "ism", "msm"])
def test_tables_equal_the_recurrence_evaluated_one_entry_at_a_time(mode):
    """The vectorised tables, moves and split points, unreachable entries aside, equal a
    plain evaluation of the recurrence (same tie order), for hidden states of 1 and 2 units
    and chained internal states smaller than or equal to standalone ones."""
    unreachable = bptt_plan._unreachable(40)[1]
    for beta, alpha, alpha1 in ((1, 1, 1), (1, 3, 3), (1, 3, 2), (2, 5, 3), (2, 4, 4)):
        for seq_len, memory in ((1, 3), (9, 12), (40, 25)):
            Q, move, split = bptt_plan._tables(seq_len, memory, beta, alpha, mode, alpha1)
            want_Q, want_move, want_split = recurrence_tables(seq_len, memory, beta, alpha, mode, alpha1)
            for t in range(seq_len + 1):
                for m in range(memory + 1):
                    where = (beta, alpha, alpha1, seq_len, memory, t, m)
                    if want_Q[t][m] == float("inf"):
                        assert Q[t, m] >= unreachable, where
                        continue
                    assert Q[t, m] == want_Q[t][m], where
                    if t > 0:
                        assert (move[t, m], split[t, m]) == (want_move[t][m], want_split[t][m]), where


@pytest.mark.parametrize("memory", [1, 2, 5, 10, 20])
def test_hsm_equals_closed_form_for_all_lengths_up_to_1000(memory):
    Q, _, _ = bptt_plan._tables(1000, memory, 1, 1, "hsm")
    for seq_len in range(1, 1001):
        assert Q[seq_len, memory] == hsm_closed_form(seq_len, memory), seq_len


def test_paper_values_and_boundaries():
    assert plan(1000, 10, "hsm").cost == 4636
    assert plan(1000, 20, "hsm").cost == 3747
    assert plan(7, 1, "hsm").cost == 7 * 8 // 2  # Q(t, 1) = t(t+1)/2
    assert plan(7, 7, "hsm").cost == 2 * 7 - 1  # Q(t, m) = 2t - 1 for t <= m
    # Enough room for every internal state but the last (transient) one: plain BPTT.
    assert plan(50, 1 + 49 * 3, "msm", alpha=3).cost == 50
    assert plan(50, 1 + 49 * 3 - 1, "msm", alpha=3).cost > 50


@pytest.mark.parametrize("mode", ["hsm", "ism", "msm"])
def test_schedules_are_valid_and_within_memory(mode):
    for seq_len, memory in [(1, 1), (13, 3), (40, 7), (100, 12)]:
        p = plan(seq_len, memory, mode, alpha=3)
        cost, peak = bptt_plan.simulate(p.actions, seq_len, 1, 3)  # raises if invalid
        assert cost == p.cost
        assert peak == p.peak_units <= memory
        # The forward pass is the prefix before the first backprop and touches each step once.
        forward = p.actions[: p.first_backprop_index + 1]
        steps = [a.step + i for a in forward if a.op is Op.ADVANCE for i in range(a.count)]
        steps += [a.step for a in forward if a.op in (Op.PUSH_INTERNAL, Op.BACKPROP_STEP)]
        assert sorted(steps) == list(range(seq_len))


def test_msm_never_worse_than_hsm_or_ism_and_cost_falls_with_memory():
    for memory in range(1, 40):
        msm = plan(60, memory, "msm", alpha=4).cost
        assert msm <= plan(60, memory, "hsm").cost
        assert msm <= plan(60, memory, "ism", alpha=4).cost
        if memory > 1:
            assert msm <= plan(60, memory - 1, "msm", alpha=4).cost


def test_render_lists_actions():
    text = plan(5, 2, "hsm").render()
    assert "store     h_2" in text and "forward   step 4, backprop it" in text
    assert str(plan(5, 2, "hsm")).startswith("Plan(mode=hsm, T=5")


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        plan(10, 3, "msm")
    with pytest.raises(ValueError, match="mode"):
        plan(10, 3, "xyz", alpha=2)
    with pytest.raises(ValueError, match="memory_slots"):
        plan(10, 0, "hsm")


def test_parse_bytes():
    assert parse_bytes("2GiB") == 2 * 2**30
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5 GB") == 1_500_000_000
    assert parse_bytes("4096") == 4096
    assert parse_bytes(100) == 100
    with pytest.raises(ValueError, match="memory size"):
        parse_bytes("lots")


def test_plan_for_budget_fits_and_reports_minimum():
    hidden, internal = 1000, 3500
    p = plan_for_budget(200, "40000", hidden, internal, mode="msm")
    assert p.peak_bytes <= 40000
    coarse_units = plan_for_budget(200, "40000", hidden, internal, mode="msm", units_per_hidden=1)
    assert coarse_units.cost == plan(200, (40000 - hidden - internal) // hidden, "msm", alpha=4.5).cost
    assert p.cost <= coarse_units.cost  # half-hidden units charge alpha = 4.5 exactly
    with pytest.raises(BudgetTooSmallError) as error:
        plan_for_budget(200, 2 * hidden + internal - 1, hidden, internal)
    assert error.value.minimum_bytes == 2 * hidden + internal
    assert str(2 * hidden + internal) in str(error.value)
    assert plan_for_budget(200, 2 * hidden + internal, hidden, internal).cost == 200 * 201 // 2
    # An odd hidden size is 2 half-hidden units, more than the minimum budget's memory
    # holds; in units of one hidden state it fits.
    assert plan_for_budget(50, 2 * 1001 + internal, 1001, internal).cost == 50 * 51 // 2
    # A huge budget is plain BPTT, and coarse units still keep the plan within budget.
    assert plan_for_budget(200, "1GiB", hidden, internal).cost == 200
    coarse = plan_for_budget(300, 10**6, 1000, 3500, max_units=64)
    assert coarse.peak_bytes <= 10**6 and coarse.unit_bytes > 1000


def smallest_unit_plan(seq_len, budget, hidden, internal, stored, chained, mode, max_units):
    """The plan in the smallest unit plan_for_budget may use (what it planned with alone
    before it tried units that fit the state sizes)."""
    working = hidden + internal
    available = budget - working
    unit = max(-(-hidden // 2), -(-available // max_units))
    h, a, a1 = (-(-size // unit) for size in (hidden, stored, chained))
    m = min(available // unit, h + (seq_len - 1) * (a if mode != "hsm" else h))
    return bptt_plan._plan_in_units(seq_len, m, h, a, mode, unit_bytes=unit, working_bytes=working, chained_units=a1)


def test_plan_for_budget_uses_units_that_fit_the_state_sizes():
    """In 40 kB units, a 51 kB internal state costs 80 kB; in units of its own size it costs
    one. The plan in the better unit is cheaper, within budget, and above the
    lower bound counted in bytes."""
    seq_len, hidden, internal, stored, chained = 300, 1_000, 51_000, 52_000, 51_000
    budget = 64 * 40_000 + hidden + internal
    sizes = dict(stored_internal_bytes=stored, chained_internal_bytes=chained)
    fitted = plan_for_budget(seq_len, budget, hidden, internal, "msm", max_units=64, **sizes)
    before = smallest_unit_plan(seq_len, budget, hidden, internal, stored, chained, "msm", 64)
    assert before.unit_bytes == 40_000 and before.chained_units == 2
    assert fitted.chained_units == 1  # in 51 or 52 kB units: both fit a chained state in one
    assert fitted.cost < before.cost
    assert fitted.peak_bytes <= budget
    assert fitted.cost >= bptt_plan.cost_lower_bound(seq_len, budget - hidden - internal, hidden, chained)


@pytest.mark.parametrize("mode", ["hsm", "ism", "msm"])
def test_plan_for_budget_never_worse_than_its_smallest_unit(mode):
    """Random sizes and budgets: the plan kept is never costlier than the smallest unit's,
    stays within budget, and no policy could do better than the byte-counted lower bound."""
    import random

    rng = random.Random(7)
    improved = 0
    for _ in range(40):
        seq_len = rng.randint(20, 80)
        hidden = rng.randint(500, 5_000)
        chained = int(hidden * rng.uniform(1.0, 40.0))
        internal = chained - hidden + int(hidden * rng.uniform(0.0, 1.0))
        stored = internal + hidden
        budget = int(rng.uniform(0.05, 0.6) * seq_len * chained) + 2 * hidden + internal
        plan_ = plan_for_budget(
            seq_len, budget, hidden, internal, mode, max_units=32,
            stored_internal_bytes=stored, chained_internal_bytes=chained,
        )
        before = smallest_unit_plan(seq_len, budget, hidden, internal, stored, chained, mode, 32)
        assert plan_.cost <= before.cost
        assert plan_.peak_bytes <= budget
        assert plan_.cost >= bptt_plan.cost_lower_bound(seq_len, budget - hidden - internal, hidden, chained)
        improved += plan_.cost < before.cost
    assert improved > 0


def test_byte_plans_leave_no_tables_in_the_cache():
    """The learner keeps its plans; their DP tables (18 MB each at T = 4000) must not stay
    alive in the planner's cache beside them."""
    bptt_plan._tables.cache_clear()
    plan_for_budget(120, 60_000, 1_000, 3_500, "msm", stored_internal_bytes=4_400, chained_internal_bytes=3_600)
    assert bptt_plan._tables.cache_info().currsize == 0
    plan(120, 10, "msm", alpha=4)
    assert bptt_plan._tables.cache_info().currsize == 1


def test_a_budget_beyond_plain_bptt_plans_plain_bptt_in_its_own_sizes():
    """With 1 GB for 40 steps of 51 kB, the smallest unit allowed (1/512 of the budget) is
    2 MB, and every stored state would count as one. Plain BPTT's memory caps the units, so
    a unit of the state's own size fits, and the plan reports what plain BPTT holds."""
    hidden, internal, stored, chained = 1_000, 50_000, 51_000, 50_500
    plan_ = plan_for_budget(40, 10**9, hidden, internal, "msm", stored_internal_bytes=stored, chained_internal_bytes=chained)
    assert plan_.cost == 40
    assert plan_.peak_bytes <= hidden + 40 * stored + hidden + internal


def test_a_capped_plan_reports_the_true_size_of_its_states():
    """Half of plain BPTT's memory for 200 steps of 51 kB, in at most 32 units: any unit
    allowed holds one state, so the plan stores about 31 of them whatever the unit; in the
    state's own size it reports about 32 × 51 kB, not the 5 MB budget it cannot use."""
    hidden, internal, stored, chained = 1_000, 50_000, 51_000, 50_500
    budget = 100 * stored
    plan_ = plan_for_budget(200, budget, hidden, internal, "msm", max_units=32,
                            stored_internal_bytes=stored, chained_internal_bytes=chained)
    before = smallest_unit_plan(200, budget, hidden, internal, stored, chained, "msm", 32)
    assert before.unit_bytes > stored and plan_.cost <= before.cost
    assert plan_.peak_bytes <= 33 * stored + hidden + internal < budget // 2
