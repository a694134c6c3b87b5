"""The derived capacity checked against what the admitted replies measured: a feedback on the formula.

``SharedLLM`` derives how many replies it admits at once from a lone session's voice-to-voice, the LLM's mean
hold and the sessions listening (k replies while the k - 1 holds ahead of the last and their cost fit in one
lone voice-to-voice). Each is a moving average that errs until measured (the cost of a listening session is
learned on the replies admitted among listeners, from a start-up floor), and a reply's first clause varies, so on
a host where the hold is close to the voice-to-voice the formula may still admit one reply too many. This module
closes that loop with the replies' own figures: every completed reply's voice-to-voice over
the lone one (its ``ratio``) is a sample, and

- a reply over the budget (``BUDGET``: 2x a lone session's, the service's target) lowers the capacity by one
  place at once (``cut`` grows), unless it was admitted when more places were open than now (a reply of the
  crowd before the last cut says nothing about the capacity since: no two cuts from one burst), and never below
  one place;
- a streak of replies in a row that would still have fitted with one more reply ahead of them (``ratio`` plus one hold
  over the lone voice-to-voice within the budget; a reply admitted alone, within the budget: the host was quiet, and
  its own first clause's length says nothing of room for another) gives one place back: ``RECOVER_AFTER`` after the
  first cut, twice as many after each cut since (``cuts``, up to ``MAX_RECOVER``); a reply between the two (in the
  budget, without room for another) breaks the streak and changes nothing. That is the hysteresis: at one place less,
  a crowd's replies just within budget keep it there, and where the prediction "one more reply waits one more hold"
  errs low (a crowd's replies with room to spare, whose next one still misses), each miss makes the next return
  slower, so a steady crowd misses ever more rarely instead of once every few replies.

Down fast, up slowly, one place a step: a miss costs a listener a reply that comes too late, a cut costs one
more "busy" to a crowd. Replies measured alone count as samples too (their ratio is about 1), so a quiet hour or
a few replies to one person give the places back; on a ledger the state is the host's (``figures``) and lapses
with them after an hour without a reply (all places back, the count of cuts too). Pure functions over a small
state, so tests drive it with fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BUDGET = 2.0  # an admitted reply is heard within this many lone voice-to-voice (issue 21's target)
RECOVER_AFTER = 4  # replies in a row with room for one more that give a place back after the first cut
MAX_RECOVER = 64  # ... doubled after each cut since, up to this many
CUTS_CAP = 5  # cuts counted (4 * 2 ** 4 = MAX_RECOVER)


@dataclass(frozen=True)
class GovernorState:
    """``cut``: places taken off the derived capacity; ``fits``: the current streak of replies with room for one
    more; ``cuts``: the cuts so far (each doubles the streak that gives a place back); ``reason``: why the
    capacity is what it is (for /health)."""

    cut: int = 0
    fits: int = 0
    reason: str = "derived"
    cuts: int = 0

    @property
    def recover_after(self) -> int:
        """Replies with room in a row that give a place back now."""
        return min(MAX_RECOVER, RECOVER_AFTER << max(0, self.cuts - 1))


def step(state: GovernorState, *, ratio: float, headroom: float, derived: int,
         admitted_at: int | None = None, alone: bool = False) -> GovernorState:
    """The state after one completed reply heard ``ratio`` lone voice-to-voices after its speech. ``headroom``:
    what one more reply ahead would add (the mean hold over the lone voice-to-voice); ``derived``: the formula's
    capacity now; ``admitted_at``: the capacity when the reply took its place (None: not known); ``alone``: it was
    admitted with no other reply in flight and nobody else mid-turn. A lone reply's ratio is the lone figure's own
    spread (a 4-word first clause or a 12-word one: 1.2-2.7 s on one host), so within the budget it is room: judged
    by one more hold on top, a third of a quiet spell's replies broke the streak where the hold is close to the lone
    voice-to-voice, and six lone turns gave no place back (docs/BENCHMARKS.md, "Issue 21, the crowd's listening")."""
    effective = capacity(derived, state)
    if ratio > BUDGET:
        if admitted_at is not None and admitted_at > effective:
            return replace(state, fits=0)  # a reply admitted before the last cut
        if effective <= 1:
            return replace(state, fits=0, reason=f"over budget ({ratio:.2f}x) at one place: the floor")
        return GovernorState(state.cut + 1, 0, f"a reply at {ratio:.2f}x a lone one: one place less",
                             min(state.cuts + 1, CUTS_CAP))
    if not alone and ratio + headroom > BUDGET:
        return replace(state, fits=0)  # within budget, without room for one more
    fits = state.fits + 1
    if state.cut > 0 and fits >= state.recover_after:
        return replace(state, cut=state.cut - 1, fits=0, reason=f"{fits} replies with room for one more: one place "
                       "back")
    return replace(state, fits=fits)


def capacity(derived: int, state: GovernorState) -> int:
    """The capacity admitted: the formula's less the places cut, never below one."""
    return max(1, derived - state.cut)
