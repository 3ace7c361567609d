"""The reverberant tail of a simulated room without pyroomacoustics' per-reflection Python loops: same numbers.

pyroomacoustics (0.10) turns the ray tracer's energy histograms into the late part of an impulse response by
(1) drawing the arrival times of a Poisson process of reflections, one generator call per reflection
(`simulation.rt.poisson_sequence`), and (2) adding a signed pulse per reflection into a sequence, one Python
statement per reflection (`simulation.rt.directional_sequence`). A room of the synthesized corpora has
~5,000 reflections; the two loops measured 21 of a room's 28 CPU-ms, most of a fresh synthesis process's
first corpus. `library_loops_replaced()` swaps in the two functions below while a room is simulated. They
draw the same random numbers in the same order and do the same floating-point operations in the same order,
so every impulse response, and every corpus built on them, stays bit-identical (tests/data/test_room_tail.py
compares them against the library's own functions). Only versions of pyroomacoustics checked that way get
the swap; any other keeps its own loops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pyroomacoustics as pra  # only imported where a room is simulated (rooms.simulate)
from pyroomacoustics.simulation import rt

VERIFIED_VERSIONS = ("0.10.1",)  # read, and tests/data/test_room_tail.py passed: add a version once it passes
_CHUNK = 2048  # draws at a time at the constant rate (a room of the corpora takes ~2,000-7,000)
_LIBRARY = {"poisson_sequence": rt.poisson_sequence, "directional_sequence": rt.directional_sequence}


def reflection_times(volume: float, duration: float, c: float, max_rate: float = 10000,
                     t0: float | None = None) -> tuple[float, np.ndarray]:
    """`rt.poisson_sequence` with its constant-rate stretch drawn in chunks: (t0, arrival times in s)."""
    if t0 is None:  # the library derives t0 itself; compute_rt_rir always passes it
        return _LIBRARY["poisson_sequence"](volume, duration, c, max_rate=max_rate, t0=t0)
    rng = pra.random.get_rng()
    rate_per_t2 = 4 * np.pi * c**3 / volume  # reflections per second grow with t² (written as the library does)
    end = t0 + duration
    times = [t0]
    # While the rate grows, each interval depends on the time reached: one draw at a time (~150 a room).
    while times[-1] < end:
        rate = np.minimum(rate_per_t2 * (t0 + times[-1]) ** 2, max_rate)
        if rate >= max_rate:
            break
        times.append(times[-1] + np.log(1 / rng.uniform()) / rate)
    if times[-1] >= end:
        return t0, np.array(times)
    # From here the rate stays at max_rate: the intervals are independent draws and the times their running
    # sum (np.cumsum adds in order, as the loop does), drawn a chunk at a time. Where the loop would stop is
    # known only once the sum passes `end`: then the generator is put back to the chunk's start and advanced
    # by exactly the draws the loop takes, so that the draws after this function are the library's.
    rate = np.minimum(rate_per_t2 * (t0 + times[-1]) ** 2, max_rate)
    pieces = [np.array(times)]
    while True:
        state = rng.bit_generator.state
        steps = np.log(1 / rng.uniform(size=_CHUNK)) / rate
        piece = np.cumsum(np.concatenate((pieces[-1][-1:], steps)))[1:]
        passed = np.flatnonzero(piece >= end)
        if len(passed) == 0:
            pieces.append(piece)
            continue
        count = int(passed[0]) + 1
        rng.bit_generator.state = state
        rng.uniform(size=count)
        pieces.append(piece[:count])
        return t0, np.concatenate(pieces)


def reflection_sequence(t0: float, times: np.ndarray, response: np.ndarray, hist: np.ndarray,
                        hist_bin_size: float, fs: float) -> np.ndarray:
    """`rt.directional_sequence` for a receiver whose response is one tap, the same in every direction
    (an omnidirectional microphone): the pulses added at once. Other receivers go to the library's loop."""
    if response.shape[1] != 1 or np.any(response != response[0, 0]):
        return _LIBRARY["directional_sequence"](t0, times, response, hist, hist_bin_size, fs)
    rng = pra.random.get_rng()
    # The library's random draws, in its order: a sign per reflection for the energy estimate, a direction
    # per reflection (unused: every direction has the same response), the pulses' signs.
    power = rt.seq_rolling_power(rt.binary_sequence(times, fs), int(hist_bin_size * fs), filter_length_mult=2)
    rng.uniform(size=len(times))
    signs = rng.choice([1, -1], size=len(times))
    gain = np.zeros_like(power)  # unit energy per histogram bin: 1/power where there is any
    audible = power > 1e-10
    gain[audible] = 1.0 / power[audible]
    at = (times * fs).astype(np.int64)  # reflections may share a sample: np.add.at adds them in order
    seq = np.zeros(at[-1] + 2)
    np.add.at(seq, at, signs * response[0, 0] * np.sqrt(gain[at]))
    return seq


@contextlib.contextmanager
def library_loops_replaced() -> Iterator[bool]:
    """Within the block, pyroomacoustics builds tails with the functions above (yields whether it does)."""
    if pra.__version__ not in VERIFIED_VERSIONS:
        yield False
        return
    rt.poisson_sequence, rt.directional_sequence = reflection_times, reflection_sequence
    try:
        yield True
    finally:
        rt.poisson_sequence, rt.directional_sequence = _LIBRARY["poisson_sequence"], _LIBRARY["directional_sequence"]
