"""The rooms behind `reverb`: a bank of distinct rooms inside the documented bounds, each cached under its own name."""

import numpy as np
import pytest

from xlsr.data import rooms
from xlsr.data.rooms import ROOMS, draw_room, impulse_response

# docs/synth.md: room 3-9 x 2.5-7 x 2.4-3.5 m, talker and microphone >= 0.4 m from the walls and >= 0.5 m apart
SIZES = ((3.0, 9.0), (2.5, 7.0), (2.4, 3.5))


@pytest.fixture(autouse=True)
def room_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    impulse_response.cache_clear()
    yield tmp_path / "cache" / "rooms"
    impulse_response.cache_clear()


def test_a_bank_holds_distinct_rooms_inside_the_documented_bounds():
    bank = [draw_room(7, i, (0.2, 0.8)) for i in range(ROOMS)]
    assert len({r.size for r in bank}) == ROOMS and len({r.talker for r in bank}) == ROOMS
    rt60 = [r.rt60 for r in bank]
    assert min(rt60) < 0.3 and max(rt60) > 0.7 and all(0.2 <= t <= 0.8 for t in rt60)
    assert draw_room(8, 0, (0.2, 0.8)) != bank[0]  # another seed, another bank
    for seed in range(40):  # many rooms: a talker 0.5 m from the microphone is ~1% of uniform draws
        for index in range(ROOMS):
            room = draw_room(seed, index, (0.2, 0.8))
            for side, (lo, hi) in zip(room.size, SIZES):
                assert lo <= side <= hi, room
            for point in (room.talker, room.microphone):  # rounded to mm
                for x, side in zip(point, room.size):
                    assert 0.4 - 5e-4 <= x <= side - 0.4 + 5e-4, room
            assert np.linalg.norm(np.subtract(room.talker, room.microphone)) >= 0.5 - 2e-3, room


def test_each_room_is_cached_under_its_own_name_and_read_back_without_simulating(room_cache, monkeypatch):
    """Two rooms of one RT60 (`reverb=1:0.2-0.2`) are two responses on disk; a later process reads them back."""
    a, b = draw_room(4, 0, (0.2, 0.2)), draw_room(4, 1, (0.2, 0.2))
    ra, rb = impulse_response(a), impulse_response(b)
    assert len(ra) != len(rb) or not np.array_equal(ra, rb)
    assert len(list(room_cache.iterdir())) == 2  # the two responses, no temporary files left beside them

    def no_simulation(room):
        raise AssertionError("simulated again: the cache was not used")

    monkeypatch.setattr(rooms, "simulate", no_simulation)
    impulse_response.cache_clear()  # as a new process
    assert np.array_equal(impulse_response(a), ra) and np.array_equal(impulse_response(b), rb)
