"""RankOrder: rank order, stable ties, starvation promotion, age bound, unscorable requests."""

from dataclasses import dataclass

from sglang_arctic.scheduling.order import RankOrder, StarvationRule


@dataclass
class Req:
    rid: str
    score: float | None


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(rule=StarvationRule(starvation_steps=1000, promotion_steps=10, max_wait_s=0), clock=None):
    calls = []

    def scorer(req):
        calls.append(req.rid)
        if req.score == "boom":
            raise ValueError("cannot featurize")
        return req.score

    order = RankOrder(rule, key=lambda r: r.rid, scorer=scorer, clock=clock or Clock())
    return order, calls


def rids(queue):
    return [r.rid for r in queue]


def test_highest_score_first_ties_keep_queue_order():
    order, _ = make()
    queue = [Req("a", 1.0), Req("b", 3.0), Req("c", 1.0), Req("d", 2.0)]
    order.sort(queue)
    assert rids(queue) == ["b", "d", "a", "c"]


def test_each_request_is_scored_once():
    order, calls = make()
    queue = [Req("a", 1.0), Req("b", 2.0)]
    for _ in range(5):
        order.sort(queue)
    queue.append(Req("c", 0.5))
    order.sort(queue)
    assert sorted(calls) == ["a", "b", "c"]
    assert order.stats.scored == 3 and order.stats.rounds == 6


def test_unscorable_requests_are_served_first_in_arrival_order_never_dropped():
    order, _ = make()
    queue = [Req("a", 5.0), Req("x", None), Req("b", 9.0), Req("y", "boom"), Req("z", float("nan"))]
    order.sort(queue)
    assert rids(queue) == ["x", "y", "z", "b", "a"]
    assert order.stats.unscorable == 3


def test_starved_request_is_promoted_for_the_promotion_period():
    order, _ = make(StarvationRule(starvation_steps=3, promotion_steps=2, max_wait_s=0))
    low = Req("low", -100.0)
    queue = [low]
    heads = []
    for k in range(8):
        # A fresh high-scoring request arrives every round and would otherwise win.
        queue.append(Req(f"s{k}", 100.0 - k))
        order.sort(queue)
        heads.append(queue[0].rid)
        queue.pop(1 if queue[0] is low else 0)  # admit someone other than "low"
    # low is passed over in rounds 1..3 (3 times), promoted in rounds 3 and 4,
    # then ranked again until it starves anew.
    assert heads[3] == "low" and heads[4] == "low"
    assert "low" not in heads[:3] and "low" not in heads[5:7]
    assert order.stats.promotions >= 1


def test_age_bound_promotes_until_admitted():
    clock = Clock()
    order, _ = make(StarvationRule(starvation_steps=1000, promotion_steps=1, max_wait_s=30), clock)
    queue = [Req("old", -5.0)]
    order.sort(queue)
    clock.now = 29.0
    queue += [Req("new1", 5.0), Req("new2", 4.0)]
    order.sort(queue)
    assert rids(queue)[0] == "new1"
    clock.now = 31.0
    for _ in range(3):
        order.sort(queue)
        assert rids(queue)[0] == "old"


def test_departed_requests_are_forgotten():
    order, calls = make()
    queue = [Req("a", 1.0), Req("b", 2.0)]
    order.sort(queue)
    queue.remove(queue[0])
    order.sort(queue)
    assert order.promoted_keys() == [] and len(order._table) == 1
    # A request id seen again later (e.g. retracted back to the queue) is scored afresh.
    queue.append(Req("b", 2.0))
    order.sort(queue)
    assert calls.count("b") == 2
