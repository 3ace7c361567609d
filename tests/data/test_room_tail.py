"""Room tails built without pyroomacoustics' per-reflection loops equal the library's, bit for bit."""

import numpy as np
import pyroomacoustics as pra
import pytest
from pyroomacoustics.simulation import rt

from xlsr.data import room_tail
from xlsr.data.rooms import draw_room, simulate

FS = 16000


def from_one_state(seed, functions, *args, **kwargs):
    """Each function called from the same generator state: [(its result, the generator's next draws), ...]."""
    out = []
    for f in functions:
        pra.random.seed(numpy=seed, libroom=seed)
        result = f(*args, **kwargs)
        out.append((result, pra.random.get_rng().uniform(size=4)))
    return out


@pytest.mark.parametrize("volume, duration, t0", [
    (60.0, 0.5, 0.004),  # a small room: ~100 growing-rate draws, then ~5,000 at the constant rate
    (180.0, 1.3, 0.01),  # a long tail: the constant-rate draws span several chunks
    (3000.0, 0.05, 0.02),  # a hall cut short: the rate never reaches its maximum
    (60.0, 0.0, 0.004),  # no tail at all
])
def test_reflection_times_are_the_librarys(volume, duration, t0):
    assert rt.poisson_sequence is room_tail._LIBRARY["poisson_sequence"]
    (lib, lib_next), (ours, ours_next) = from_one_state(
        11, (rt.poisson_sequence, room_tail.reflection_times), volume, duration, 343.0, t0=t0)
    assert lib[0] == ours[0] and lib[1].dtype == ours[1].dtype
    assert np.array_equal(lib[1], ours[1])
    assert np.array_equal(lib_next, ours_next)  # the generator is left where the library leaves it
    if duration >= 0.5:
        assert len(ours[1]) > 2 * room_tail._CHUNK


@pytest.mark.parametrize("directions", [1, 3])
def test_reflection_sequence_is_the_librarys_for_an_omnidirectional_receiver(directions):
    pra.random.seed(numpy=5)
    _, times = rt.poisson_sequence(80.0, 0.6, 343.0, t0=0.005)
    hist = np.random.default_rng(0).random((directions, 150))
    hist[:, 40:45] = 0.0  # bins with no energy take the uniform direction distribution
    response = np.broadcast_to(np.ones(1)[:, None], (directions, 1))  # what compute_rt_rir passes for omni
    (lib, lib_next), (ours, ours_next) = from_one_state(
        3, (rt.directional_sequence, room_tail.reflection_sequence), 0.005, times, response, hist, 0.004, FS)
    assert lib.shape == ours.shape and np.array_equal(lib, ours)
    assert np.array_equal(lib_next, ours_next)
    assert len(np.unique((times * FS).astype(np.int64))) < len(times)  # shared samples were summed too


def test_simulated_rooms_are_bit_identical_with_and_without_the_library_loops(monkeypatch):
    rooms = [draw_room(0, 0, (0.2, 0.8)), draw_room(3, 7, (0.2, 0.8)), draw_room(5, 1, (1.0, 1.2))]
    monkeypatch.setattr(room_tail, "VERIFIED_VERSIONS", ())
    library = [simulate(room) for room in rooms]
    monkeypatch.setattr(room_tail, "VERIFIED_VERSIONS", (pra.__version__,))
    ours = [simulate(room) for room in rooms]
    for a, b in zip(library, ours):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert rt.poisson_sequence is room_tail._LIBRARY["poisson_sequence"]  # the swap ends with the block
    assert rt.directional_sequence is room_tail._LIBRARY["directional_sequence"]


def test_the_installed_pyroomacoustics_gets_the_fast_tail():
    with room_tail.library_loops_replaced() as replaced:
        assert replaced, (f"pyroomacoustics {pra.__version__} is not in room_tail.VERIFIED_VERSIONS: if the tests "
                          f"above pass on it, add it (rooms keep the library's loops meanwhile: 3x slower)")
