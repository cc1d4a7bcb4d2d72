"""Per-resource failover, as rules of the ownership state machine (a mixin of
:class:`~zkpoll.ownership.state.OwnershipState`; pure, like it).

A key polled in cycle ``C`` is a token held by one member at a time:

* **Handoff out.** The member polling key ``k`` (its owner, or a member it
  was handed to) could not reach it and produced nothing for it.  While
  fewer than ``1 + failover_hops`` members have tried, it hands ``k`` to the
  owner ``k`` would have in the ring of ``C`` without the members tried (the
  successor catch-up would pick: balanced over the others), in one
  handoff per successor, and publishes nothing for ``k``.  Otherwise it
  gives up: it publishes the pollster's "unreachable" sample, once.
* **Confirmation.** A handoff counts only once the backend confirmed it.
  Not confirmed, nobody publishes ``k`` in ``C`` (a gap, never a
  duplicate: the write may still land, and then only the successor polls).
* **Handoff in.** The successor polls the keys of a handoff once (a
  redelivered handoff is ignored) while ``C`` has not ended by its clock and
  it is not fenced; otherwise ``k`` is a gap for ``C``, logged.  It owns ``k``
  for ``C`` only; the ring decides the next cycle again.
* **Catch-up is unchanged.** The owner claimed ``C`` before it polled, so
  if it vanishes nobody catches ``k`` up; a successor that vanishes or is
  fenced before polling leaves ``k`` a gap for ``C`` (as a member that dies
  between its claim and its poll does).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from zkpoll.coordination.ring import HashRing
from zkpoll.ownership.events import (
    AckHandoff,
    Action,
    Contact,
    GiveUp,
    HandoffReceived,
    HandoffSent,
    KeysUnreachable,
    Poll,
    PollKind,
    SendHandoff,
)
from zkpoll.ownership.members import RingCache

__all__ = ["HandoffRules"]

#: Handed-in keys are remembered for this many cycles per source (redeliveries).
_REMEMBERED_CYCLES = 2
#: Keys per kind and source the claims record names (zkpoll-status owner reads them).
RECORDED_KEYS = 100
#: Keys per handoff: one handoff stays far below the backends' payload limit
#: (512 KiB: about 10,000 keys of 50 bytes).
KEYS_PER_HANDOFF = 2000


class HandoffRules:
    """The handlers of handoff events (see the module docstring)."""

    # Set by OwnershipState.__init__:
    config: Any
    member_id: str | None
    plans: dict[str, Any]
    record: dict[str, Any]
    handed_in: dict[tuple[str, int], set[str]]
    log: deque[tuple[int, str, str]]
    _rings: RingCache

    def _note(self, level: int, cause: str, text: str) -> None:
        raise NotImplementedError

    def fence_reason(self, contact: Contact) -> str | None:
        raise NotImplementedError

    def ring_at(self, at: float) -> HashRing:
        raise NotImplementedError

    # --- handoff out ---------------------------------------------------------------
    def _keys_unreachable(self, ev: KeysUnreachable, cause: str) -> list[Action]:
        actions = self._hand_on(ev, cause)
        for action in actions:
            if isinstance(action, GiveUp) and self.config.failover_hops > 0:
                self._record_handoffs(ev.source, ev.index, "gave_up",
                                      dict.fromkeys(action.keys, action.reason))
        return actions

    def _hand_on(self, ev: KeysUnreachable, cause: str) -> list[Action]:
        tried = (*ev.tried, self.member_id or "")
        hops = self.config.failover_hops
        reason = self.fence_reason(ev.contact)
        if hops <= 0:
            return [GiveUp(ev.source, ev.index, ev.keys, "failover is off", cause=cause)]
        if len(tried) > hops:
            return [GiveUp(ev.source, ev.index, ev.keys,
                           f"unreachable from {len(tried)} member(s): {', '.join(tried)}",
                           cause=cause)]
        if reason:
            return [GiveUp(ev.source, ev.index, ev.keys, f"not handed off while fenced: "
                           f"{reason}", cause=cause)]
        ring = self._ring_without(ev.source, ev.index, ev.start, tried)
        by_successor: dict[str, list[str]] = {}
        alone: list[str] = []
        for key in ev.keys:
            if len(ring):
                by_successor.setdefault(ring.owner(key), []).append(key)
            else:
                alone.append(key)
        actions: list[Action] = [
            SendHandoff(to, ev.source, ev.index, ev.start, ev.interval,
                        tuple(keys[i:i + KEYS_PER_HANDOFF]), tried,
                        self.config.claim_timeout, cause=cause)
            for to, keys in sorted(by_successor.items())
            for i in range(0, len(keys), KEYS_PER_HANDOFF)]
        for to, keys in by_successor.items():
            self._record_handoffs(ev.source, ev.index, "out", dict.fromkeys(keys, to))
        if alone:
            actions.append(GiveUp(ev.source, ev.index, tuple(alone), "no other member in the "
                                  "ring to hand them to", cause=cause))
        return actions

    def _ring_without(self, source: str, index: int, start: float,
                      tried: tuple[str, ...]) -> HashRing:
        """The ring of cycle ``index`` (as planned, else as we see it) less ``tried``."""
        plan = self.plans.get(source)
        ring = plan.ring if plan is not None and plan.index == index else self.ring_at(start)
        rest = {m: w for m, w in ring.members.items() if m not in tried}
        return self._rings.get(rest)

    def _handoff_sent(self, ev: HandoffSent, cause: str) -> list[Action]:
        if ev.confirmed:  # DEBUG: the runner says it once per streak
            self._note(logging.DEBUG, cause, f"handoff: source {ev.source} cycle {ev.index}: "
                       f"{len(ev.keys)} unreachable resource(s) handed to {ev.to}")
        else:
            self._note(logging.WARNING, cause, f"handoff: source {ev.source} cycle "
                       f"{ev.index}: the backend did not confirm our handoff of "
                       f"{len(ev.keys)} resource(s) to {ev.to} ({ev.error or 'no answer'}): "
                       "nobody polls them in this cycle (a gap, never a duplicate)")
        return []

    # --- handoff in ----------------------------------------------------------------------
    def _handoff_received(self, ev: HandoffReceived, cause: str) -> list[Action]:
        actions: list[Action] = [AckHandoff((ev.handoff_id,), cause=cause)]
        self._forget_old_handoffs(ev.source, ev.index)
        done = self.handed_in.setdefault((ev.source, ev.index), set())
        fresh = tuple(k for k in ev.keys if k not in done)
        if not fresh:
            return actions  # delivered again
        done.update(fresh)
        why = self.fence_reason(ev.contact)
        if not why and ev.contact.now >= ev.start + ev.interval:
            why = "the cycle ended before it arrived"
        if why:
            self._note(logging.WARNING, cause, f"handoff: source {ev.source} cycle {ev.index}:"
                       f" {len(fresh)} resource(s) from {ev.sender} not polled: {why} (a gap, "
                       "never a duplicate)")
            return actions
        self._record_handoffs(ev.source, ev.index, "in", dict.fromkeys(fresh, ev.sender))
        return [*actions, Poll(ev.source, ev.index, ev.start, fresh, PollKind.HANDOFF,
                               tried=ev.tried, cause=cause)]

    def _record_handoffs(self, source: str, index: int, kind: str,
                         entries: dict[str, str]) -> None:
        """Name handoffs of ``source``'s cycle ``index`` in the claims record (its
        newest cycle only, at most :data:`RECORDED_KEYS` keys per kind)."""
        handoffs = self.record.setdefault("handoffs", {})
        mine = handoffs.get(source)
        if mine is None or mine.get("cycle", -1) < index:
            mine = handoffs[source] = {"cycle": index, "out": {}, "in": {}, "gave_up": {}}
        elif mine["cycle"] > index:
            return
        kept = mine[kind]
        for key, value in entries.items():
            if len(kept) >= RECORDED_KEYS:
                mine["truncated"] = True
                break
            kept[key] = value

    def _forget_old_handoffs(self, source: str, index: int) -> None:
        for key in [k for k in self.handed_in if k[0] == source
                    and k[1] < index - _REMEMBERED_CYCLES]:
            del self.handed_in[key]
