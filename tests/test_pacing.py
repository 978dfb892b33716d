"""The slots' pacing (rexec/executor/pacing.py): how many slots run, from the handlers'
timings and, on top, a hill climb on throughput. Pure logic: values in, values out."""

from __future__ import annotations

from rexec.executor.pacing import Pacing, Slot


def test_the_cap_starts_at_the_concurrency_and_goes_down_while_it_costs_nothing() -> None:
    pacing = Pacing(8)
    assert pacing.cap == 8
    caps = []
    for _ in range(5):
        pacing.tune(1000.0, has_work=True)
        caps.append(pacing.cap)
    assert caps == [7, 6, 5, 4, 3]


def test_a_fall_in_throughput_turns_the_climb_back_up_and_a_useless_thread_goes_again() -> None:
    pacing = Pacing(8)
    pacing.tune(1000.0, has_work=True)  # 7
    pacing.tune(1000.0, has_work=True)  # 6
    pacing.tune(800.0, has_work=True)  # fell: back up to 7
    assert pacing.cap == 7
    pacing.tune(1000.0, has_work=True)  # rose: up again to 8
    assert pacing.cap == 8
    pacing.tune(1010.0, has_work=True)  # at the top: down next
    assert pacing.cap == 7
    pacing.tune(1000.0, has_work=True)
    assert pacing.cap == 6


def test_noise_does_not_turn_it() -> None:
    pacing = Pacing(8)
    pacing.tune(1000.0, has_work=True)
    pacing.tune(960.0, has_work=True)  # within 5 %: still going down
    assert pacing.cap == 6


def test_the_cap_stays_within_one_and_the_concurrency() -> None:
    pacing = Pacing(3)
    for _ in range(10):
        pacing.tune(1000.0, has_work=True)
    assert pacing.cap == 1
    rate = 1000.0
    for _ in range(10):
        rate *= 0.5  # every step down and up alike looks worse
        pacing.tune(rate, has_work=True)
        assert 1 <= pacing.cap <= 3


def test_an_empty_buffer_resets_the_cap() -> None:
    pacing = Pacing(8)
    for _ in range(4):
        pacing.tune(1000.0, has_work=True)
    pacing.tune(0.0, has_work=False)
    assert pacing.cap == 8


def test_wanted_is_the_handlers_ratio_under_the_cap_plus_stuck_slots() -> None:
    pacing = Pacing(8)
    slot = Slot(0)
    for _ in range(32):  # waits 10x its CPU time: 10 slots keep a CPU busy
        pacing.sample(slot, 0.010, 0.001)
    for _ in range(60):
        pacing.sample(slot, 0.010, 0.001)
    assert pacing.wanted([slot], 8) == 8
    pacing.cap = 3
    assert pacing.wanted([slot], 8) == 3
