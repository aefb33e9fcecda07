"""The training loops' batch prefetching: same batches in order, errors where they belong, a clean stop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ij_bridge.prefetch import Prefetch


def test_batches_are_those_drawn_inline_in_order():
    inline = np.random.default_rng(3)
    want = [inline.normal(size=5) for _ in range(40)]
    rng = np.random.default_rng(3)
    with Prefetch(lambda: rng.normal(size=5), 40, depth=3) as batches:
        got = [batches.next() for _ in range(40)]
        with pytest.raises(StopIteration):
            batches.next()
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_drawing_runs_beside_the_consumer():
    """While the consumer works on one batch the next is drawn: 6 batches of 0.1 s drawing and
    0.1 s work take about 0.7 s, not 1.2 s (sleeps: no CPU needed)."""
    def draw():
        time.sleep(0.1)
        return 1

    t0 = time.perf_counter()
    with Prefetch(draw, 6) as batches:
        for _ in range(6):
            batches.next()
            time.sleep(0.1)
    assert time.perf_counter() - t0 < 1.05


def test_an_error_in_drawing_is_raised_by_the_call_that_wanted_that_batch():
    calls = []

    def draw():
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("bad patch 3")
        return len(calls)

    with Prefetch(draw, 10) as batches:
        assert [batches.next(), batches.next()] == [1, 2]
        with pytest.raises(ValueError, match="bad patch 3"):
            batches.next()
    assert len(calls) == 3   # nothing drawn after the error


def test_leaving_early_stops_the_thread():
    """A cancelled loop (an exception out of the with block) leaves no drawing thread behind."""
    n_drawn = []

    def draw():
        n_drawn.append(1)
        time.sleep(0.01)
        return 0

    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(KeyboardInterrupt):
        with Prefetch(draw, 10_000, depth=2) as batches:
            batches.next()
            raise KeyboardInterrupt
    assert not [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert len(n_drawn) <= 5   # the taken one, depth ready, one in hand, one started


def test_inline_drawing_gives_the_same_batches_without_a_thread():
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    before = threading.active_count()
    with Prefetch(lambda: rng_a.normal(size=3), 5) as a, Prefetch(lambda: rng_b.normal(size=3), 5,
                                                                   background=False) as b:
        assert threading.active_count() == before + 1   # only the background one
        for _ in range(5):
            np.testing.assert_array_equal(a.next(), b.next())
        with pytest.raises(StopIteration):
            b.next()


def test_a_spare_core_is_one_torch_does_not_use():
    import os

    import torch

    from ij_bridge.prefetch import spare_core

    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert spare_core() == (len(os.sched_getaffinity(0)) > 1)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        assert not spare_core()
    finally:
        torch.set_num_threads(n)
