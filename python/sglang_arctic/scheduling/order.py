"""Ordering a waiting queue by predicted rank, with starvation promotion.

Engine-agnostic: it sees opaque items, a key per item (the request id) and a
score per item (higher = predicted shorter output = serve earlier). The host
adapter (``hooks.py``) calls ``RankOrder.sort`` once per scheduling round,
i.e. each time the scheduler is about to admit waiting requests.

Rules, in order of precedence:
1. A *promoted* request goes first; promoted requests keep arrival order.
   A request is promoted while any of these holds:
   - it has been passed over for ``starvation_steps`` rounds (the paper's
     ``starv``); the promotion lasts ``promotion_steps`` rounds (``period``),
     then its pass-over count starts again from zero;
   - it has waited ``max_wait_s`` seconds or more (an age bound, so a rank
     can never hold a request back indefinitely under sustained load);
   - it could not be scored (the scorer returned None): such requests are
     served first-come-first-served, never dropped and never ranked last.
2. The others follow by score, highest first; equal scores keep the order
   the queue had before (``list.sort`` is stable), so SGLang's own policy is
   the tie-break.

Each item is scored once, when first seen; the score is kept in a side table
keyed by request id and dropped when the request leaves the queue.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, Generic, List, Optional, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class StarvationRule:
    starvation_steps: int = 200
    promotion_steps: int = 10
    max_wait_s: float = 240.0  # 0: no age bound


@dataclass
class _Waiting:
    score: Optional[float]
    seq: int  # arrival order
    since: float  # clock() when first seen
    passed_over: int = 0
    promoted_left: int = 0

    def promoted(self, now: float, rule: StarvationRule) -> bool:
        return (
            self.score is None
            or self.promoted_left > 0
            or (rule.max_wait_s > 0 and now - self.since >= rule.max_wait_s)
        )


@dataclass
class OrderStats:
    rounds: int = 0
    scored: int = 0
    unscorable: int = 0
    promotions: int = 0  # starvation promotions started
    score_seconds: float = 0.0  # total time spent in the scorer
    sort_seconds: float = 0.0  # total time in sort(), scoring included


class RankOrder(Generic[Item]):
    def __init__(
        self,
        rule: StarvationRule,
        key: Callable[[Item], str],
        scorer: Callable[[Item], Optional[float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self._key = key
        self._scorer = scorer
        self._clock = clock
        self._table: Dict[str, _Waiting] = {}
        self._next_seq = 0
        self.stats = OrderStats()

    def sort(self, queue: List[Item]) -> None:
        """Reorder ``queue`` in place for this scheduling round."""
        start = time.perf_counter()
        now = self._clock()
        present = self._refresh(queue, now)
        self._forget_departed(present)
        for entry in present.values():
            self._advance_starvation(entry)

        def sort_key(item: Item):
            entry = present[self._key(item)]
            if entry.promoted(now, self.rule):
                return (0, entry.seq)
            return (1, -entry.score)

        queue.sort(key=sort_key)
        self.stats.rounds += 1
        self.stats.sort_seconds += time.perf_counter() - start

    def promoted_keys(self) -> List[str]:
        now = self._clock()
        return [k for k, e in self._table.items() if e.promoted(now, self.rule)]

    # -- steps ---------------------------------------------------------------

    def _refresh(self, queue: List[Item], now: float) -> Dict[str, _Waiting]:
        """The table entries of the items now waiting; new items are scored here."""
        present: Dict[str, _Waiting] = {}
        for item in queue:
            key = self._key(item)
            entry = self._table.get(key)
            if entry is None:
                entry = _Waiting(score=self._score(item), seq=self._next_seq, since=now)
                self._next_seq += 1
                self._table[key] = entry
            else:
                entry.passed_over += 1  # it was here last round and was not admitted
            present[key] = entry
        return present

    def _score(self, item: Item) -> Optional[float]:
        t0 = time.perf_counter()
        try:
            score = self._scorer(item)
        except Exception:  # noqa: BLE001 - an unscorable request is served FCFS, never dropped
            score = None
        self.stats.score_seconds += time.perf_counter() - t0
        if score is None or not math.isfinite(score):
            self.stats.unscorable += 1
            return None
        self.stats.scored += 1
        return float(score)

    def _forget_departed(self, present: Dict[str, _Waiting]) -> None:
        if len(present) != len(self._table):
            self._table = {k: e for k, e in self._table.items() if k in present}

    def _advance_starvation(self, entry: _Waiting) -> None:
        if entry.promoted_left > 0:
            entry.promoted_left -= 1
            if entry.promoted_left == 0:
                entry.passed_over = 0
        elif entry.passed_over >= self.rule.starvation_steps:
            entry.promoted_left = self.rule.promotion_steps
            self.stats.promotions += 1
