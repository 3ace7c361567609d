"""benchmarks/timing.py: the interleaved-median rule every side-by-side benchmark uses."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timing():
    spec = importlib.util.spec_from_file_location("timing", ROOT / "benchmarks" / "timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calls_are_interleaved_after_untimed_warmup_and_the_median_is_kept():
    now = [0.0]
    order = []
    costs = {"a": iter([100, 100, 1, 3, 2]), "b": iter([100, 10, 50, 20, 30])}  # warm-up costs are never timed

    def call(name):
        def fn():
            order.append(name)
            now[0] += next(costs[name])
        return fn

    syncs = []
    medians = _timing().interleaved_medians({"a": call("a"), "b": call("b")}, repeat=3, warmup=2,
                                            clock=lambda: now[0], sync=lambda: syncs.append(1))
    assert order == ["a", "b"] * 5
    assert medians == {"a": 2, "b": 30}
    assert len(syncs) == 2 * 2 * 3  # before and after every timed call, never in the warm-up
