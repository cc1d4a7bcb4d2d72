"""One poll's Unreachable results, settled once every pollster call is in.

A resource is handed to another member only when this member produced
nothing for it: every call given it in this poll (one per meter) answered
``Unreachable``.  A resource one meter reached and another did not, or one
whose call failed or timed out, is settled here: the Unreachables' samples
are published, as a member without failover would.  What is handed off
is published by the member that finally polls it, or gives up on it
(:mod:`zkpoll.ownership.handoff_rules`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zkpoll.plugin import Unreachable
from zkpoll.sample import Sample

__all__ = ["HandOff", "Settled", "UnreachableBook"]

#: ``hand_off(namespace, keys)`` -> the keys given up on here (publish their
#: samples), or None when the namespace has no failover (publish them all).
HandOff = Callable[[str, Sequence[str]], "Sequence[str] | None"]


@dataclass
class Settled:
    """What settling decided."""

    samples: list[tuple[str, list[Sample]]] = field(default_factory=list)  #: (meter, samples)
    handed: list[str] = field(default_factory=list)    #: keys another member now holds
    gave_up: list[str] = field(default_factory=list)   #: keys no member tried could reach


class UnreachableBook:
    """Collects one poll's calls and their Unreachable results (not thread-safe:
    the collecting thread only)."""

    def __init__(self) -> None:
        self._given: list[tuple[str, Iterable[str]]] = []  # (namespace, keys) per call
        self._answers: list[tuple[str, Sequence[Any]]] = []  # (namespace, results)
        self._results: dict[tuple[str, str], list[tuple[str, Unreachable]]] = {}

    def given(self, namespace: str, keys: Iterable[str]) -> None:
        """A call of ``namespace`` was given ``keys`` (counted only when needed)."""
        self._given.append((namespace, keys))

    def answered(self, namespace: str, meter: str, samples: Sequence[Any],
                 unreachable: Iterable[Unreachable]) -> None:
        """A call of ``meter`` answered ``samples`` and ``unreachable`` (the samples
        are only looked at when some resource was unreachable: no per-sample cost
        in a poll where every resource answered)."""
        self._answers.append((namespace, samples))
        for result in unreachable:
            self._results.setdefault((namespace, result.resource_id), []).append(
                (meter, result))

    def settle(self, hand_off: HandOff) -> Settled:
        """Hand off what nothing reached here; return what to publish now."""
        settled = Settled()
        if not self._results:
            return settled
        wanted = self._results.keys()
        given = Counter(pair for namespace, keys in self._given for key in keys
                        if (pair := (namespace, key)) in wanted)
        sampled = {(namespace, s.resource_id) for namespace, samples in self._answers
                   for s in samples if isinstance(s, Sample)}
        publish: list[tuple[str, Unreachable]] = []
        candidates: dict[str, list[str]] = {}
        for (namespace, key), results in sorted(self._results.items()):
            whole = (len(results) == given[(namespace, key)]
                     and (namespace, key) not in sampled)
            if whole:
                candidates.setdefault(namespace, []).append(key)
            else:
                publish += results
        for namespace, keys in candidates.items():
            given_up = hand_off(namespace, keys)
            kept = set(keys) if given_up is None else set(given_up)
            if given_up is not None:
                settled.gave_up += [k for k in keys if k in kept]
                settled.handed += [k for k in keys if k not in kept]
            publish += [r for k in keys if k in kept for r in self._results[(namespace, k)]]
        by_meter: dict[str, list[Sample]] = {}
        for meter, result in publish:
            if result.sample is not None:
                by_meter.setdefault(meter, []).append(result.sample)
        settled.samples = sorted(by_meter.items())
        return settled
