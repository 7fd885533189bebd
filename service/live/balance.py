"""The pool's plan: which instruments a member takes and gives back, a pure function of what
one round read (:class:`Snapshot`); :class:`Balancer` adds the hysteresis. The rules and their
reasoning are in :mod:`tickcast.service.live.pool`, which runs them round after round.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Final

PATIENCE: Final = 2
"""Rounds in a row a giving back must be planned before it happens (hysteresis)."""


def rank(member: str, name: str) -> int:
    """Rendezvous score of ``member`` for instrument ``name``: the member with the highest
    score takes it (stable, and spread evenly over members).

    Examples
    --------
    >>> rank("a", "sim:BTC/USDT:USDT") == rank("a", "sim:BTC/USDT:USDT")
    True
    """
    digest = hashlib.blake2b(f"{member}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one round read: the live members' tokens and each instrument's lease holder
    (``None``: free; a dead process of this host counts as free)."""

    members: tuple[str, ...]
    holders: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a member should change: instruments to ``take`` and to ``give`` back, and the
    fair ``share`` it was computed with (what another process took from its set meanwhile is
    :func:`taken_by_others`)."""

    share: int
    take: tuple[str, ...] = ()
    give: tuple[str, ...] = ()


def plan(
    names: Sequence[str],
    snapshot: Snapshot,
    me: str,
    current: AbstractSet[str],
    settled: AbstractSet[str] = frozenset(),
) -> Plan:
    """One member's plan for a round (see the module docstring).

    Parameters
    ----------
    names : sequence of str
        Every configured instrument (``venue:symbol``), in configuration order.
    snapshot : Snapshot
        The members and holders read this round.
    me : str
        This member's token.
    current : set of str
        The instruments this member serves (or is taking).
    settled : set of str
        Instruments free for ``patience`` rounds: any member below its share may take them.

    Examples
    --------
    Six free symbols and two members: each takes its three, and nobody else's.

    >>> names = [f"sim:S{i}/USDT:USDT" for i in range(6)]
    >>> free = Snapshot(("a", "b"), dict.fromkeys(names))
    >>> a, b = plan(names, free, "a", set()), plan(names, free, "b", set())
    >>> a.share, len(a.take), len(b.take), set(a.take) & set(b.take)
    (3, 3, 3, set())

    A third member joins: each of the others gives one back, once asked twice in a row.

    >>> held = Snapshot(("a", "b", "c"), {n: "a" if n in a.take else "b" for n in names})
    >>> p = plan(names, held, "a", set(a.take))
    >>> p.share, len(p.give), plan(names, held, "c", set()).take
    (2, 1, ())
    """
    live = sorted({*snapshot.members, me})
    counts = dict.fromkeys(live, 0)
    mine = [n for n in names if n in current and snapshot.holders.get(n) in (None, me)]
    free: list[str] = []
    for name in names:
        holder = snapshot.holders.get(name)
        if name in current:
            continue
        if holder is None:
            free.append(name)
        elif holder in counts and holder != me:
            counts[holder] += 1
    counts[me] = len(mine)
    total = len(free) + sum(counts.values())
    share = -(-total // len(live))
    take = _take(free, counts, share, me, settled)
    return Plan(share, take, _give(mine, counts, share, me, bool(free)))


def _take(
    free: Sequence[str], counts: dict[str, int], share: int, me: str, settled: AbstractSet[str]
) -> tuple[str, ...]:
    """The free instruments this member takes: those the shared assignment gives it (each
    free one, in turn, to the member holding fewest, ties to the highest :func:`rank`), then
    settled ones while it is below its share."""
    counts = dict(counts)
    mine: list[str] = []
    for name in free:
        fewest = min(counts.values())
        if fewest >= share:
            break
        chosen = max((m for m, n in counts.items() if n == fewest), key=lambda m: rank(m, name))
        counts[chosen] += 1
        if chosen == me:
            mine.append(name)
    others = sorted((n for n in free if n in settled and n not in mine), key=lambda n: -rank(me, n))
    room = max(0, share - counts[me])
    return (*mine, *others[:room])


def _give(
    mine: Sequence[str], counts: Mapping[str, int], share: int, me: str, any_free: bool
) -> tuple[str, ...]:
    """The instruments this member gives back: its excess over the share; or one, when it is
    the first of the most loaded, another holds two fewer and nothing is free."""
    n = counts[me]
    excess = n - share
    if excess <= 0:
        most = max(counts.values())
        first = min(m for m, c in counts.items() if c == most)
        gap = n - min(counts.values())
        excess = 1 if first == me and gap >= 2 and not any_free else 0
    ordered = sorted(mine, key=lambda name: rank(me, name))  # the ones it ranks lowest
    return tuple(ordered[:excess])


def taken_by_others(snapshot: Snapshot, me: str, current: AbstractSet[str]) -> list[str]:
    """The instruments of ``current`` another process holds (in configuration order of the
    snapshot).

    Examples
    --------
    >>> taken_by_others(Snapshot(("a",), {"x": "a", "y": "b", "z": None}), "a", {"x", "y", "z"})
    ['y']
    """
    return [n for n, h in snapshot.holders.items() if n in current and h not in (None, me)]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a member serves after a round: ``wanted``, and the ``share`` it planned with."""

    wanted: frozenset[str]
    share: int


class Balancer:
    """A member's decisions round after round: :func:`plan`, with the hysteresis.

    Free instruments are counted round by round (those free for ``patience`` rounds are
    *settled*: any member below its share may take them); a giving back happens once planned
    ``patience`` rounds in a row.

    Parameters
    ----------
    names : sequence of str
        Every configured instrument, ``venue:symbol``.
    me : str
        This member's token.
    patience : int
        Rounds of hysteresis (>= 1).
    """

    def __init__(self, names: Sequence[str], me: str, patience: int = PATIENCE) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.names = list(names)
        self.me = me
        self.patience = patience
        self._free_rounds: Counter[str] = Counter()
        self._give_rounds = 0

    def decide(self, snapshot: Snapshot, current: AbstractSet[str]) -> Decision:
        """The instruments to serve after this round's ``snapshot``, serving ``current``."""
        for name in self.names:
            free = snapshot.holders.get(name) is None
            self._free_rounds[name] = self._free_rounds[name] + 1 if free else 0
        settled = {n for n, rounds in self._free_rounds.items() if rounds >= self.patience}
        p = plan(self.names, snapshot, self.me, current, settled)
        self._give_rounds = self._give_rounds + 1 if p.give else 0
        give = p.give if self._give_rounds >= self.patience else ()
        if give:
            self._give_rounds = 0
        return Decision((frozenset(current) - set(give)) | set(p.take), p.share)
