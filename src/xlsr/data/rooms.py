"""Simulated rooms for reverberation: shoebox rooms drawn from a seed, impulse responses from pyroomacoustics.

A room is simulated with pyroomacoustics' hybrid method (image sources up to order 3 for the early
reflections, ray tracing for the tail), which reaches a realistic decay (a pure image-source model needs
orders of 50-90 for RT60 0.4-0.7 s: 0.3-1.3 s of CPU per room). Even so one room costs ~9 CPU-ms (RT60
0.2-0.8 s; 28 ms with pyroomacoustics' own tail loops, which `room_tail` replaces by bit-identical array
code), more than rendering a short utterance, so utterances share a bank of `ROOMS` rooms per seed, chosen at
random per utterance; a room is simulated when an utterance first draws it. Each room is simulated once per
machine: its response is kept in $XLSR_CACHE/rooms (default ~/.cache/xlsr), named by the room and the
simulator's version, and memoized per process. The simulation is seeded, so the cache only saves time
(32 rooms: ~0.3 CPU-s, plus ~0.7 CPU-s to import pyroomacoustics and scipy.signal, for every synthesis or
data-loading process).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import tempfile
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from xlsr.rates import SAMPLE_RATE

ROOMS = 32  # rooms per seed: enough variety for a small corpus, a one-off ~0.3 CPU-s per process
RT60_LIMITS = (0.15, 1.2)  # seconds; below 0.15 s the largest rooms cannot be that dry (absorption > 1)
_ROOM_SIZE = ((3.0, 9.0), (2.5, 7.0), (2.4, 3.5))  # metres (length, width, height): offices to classrooms
_MARGIN = 0.4  # metres between a wall and the talker or the microphone
_MIN_DISTANCE = 0.5  # metres between talker and microphone
_ISM_ORDER = 3  # image sources for the early reflections; ray tracing does the rest
_RAYS = 1000
# Furnished rooms scatter sound. Measured on 16 rooms (RT60 0.2-0.8 s): with scattering 0 the simulated RT60
# was 1.0-1.6x the Sabine design value (long specular axial modes), with 0.2 a steady 0.79-0.90x (Sabine's
# formula overestimates absorbent rooms), and the simulation 40% cheaper.
_SCATTERING = 0.2


@dataclass(frozen=True)
class Room:
    """A shoebox room with one talker and one microphone (metres), and its reverberation time (s)."""

    size: tuple[float, float, float]
    talker: tuple[float, float, float]
    microphone: tuple[float, float, float]
    rt60: float  # what the walls are designed for (Sabine); the simulated response measures ~0.8x this
    seed: int  # of pyroomacoustics' ray tracer


def draw_room(seed: int, index: int, rt60_range: tuple[float, float]) -> Room:
    """Room `index` of the bank of `seed`, with an RT60 drawn from `rt60_range` (pure, deterministic)."""
    rng = np.random.default_rng([seed, index, 0x7200])
    size = tuple(float(rng.uniform(lo, hi)) for lo, hi in _ROOM_SIZE)
    rt60 = float(rng.uniform(*rt60_range))

    def point() -> np.ndarray:
        return np.array([rng.uniform(_MARGIN, side - _MARGIN) for side in size])

    talker = point()
    microphone = point()
    while np.linalg.norm(talker - microphone) < _MIN_DISTANCE:  # rooms are >= 2.4 m: a few draws at most
        microphone = point()
    return Room(size=size, talker=tuple(talker.round(3)), microphone=tuple(microphone.round(3)), rt60=rt60,
                seed=int(rng.integers(2**63)))


@functools.lru_cache(maxsize=4 * ROOMS)
def impulse_response(room: Room) -> np.ndarray:
    """The room's impulse response at 16 kHz, float32, starting at the direct sound (cached, see above)."""
    settings = (astuple(room), SAMPLE_RATE, _ISM_ORDER, _RAYS, _SCATTERING, _simulator_version())
    name = hashlib.sha1(repr(settings).encode()).hexdigest()[:20] + ".npy"
    path = Path(os.environ.get("XLSR_CACHE", Path.home() / ".cache" / "xlsr")) / "rooms" / name
    try:
        return np.load(path)
    except (OSError, ValueError):  # not simulated yet on this machine, or a damaged file: simulate again
        pass
    rir = simulate(room)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npy", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, rir)
        os.replace(tmp, path)  # atomic: a concurrent process sees the whole file or none
    except OSError:
        pass  # a read-only cache only costs time
    return rir


@functools.cache
def _simulator_version() -> str:
    return importlib.metadata.version("pyroomacoustics")  # a few ms per call: once per process


def simulate(room: Room) -> np.ndarray:
    """Simulate the room with pyroomacoustics: its impulse response, float32, starting at the direct sound."""
    import pyroomacoustics as pra  # with scipy ~0.7 CPU-s to import (measured): only when a room is simulated

    from xlsr.data.room_tail import library_loops_replaced

    pra.random.seed(numpy=room.seed, libroom=room.seed)  # the ray tracer draws its rays from these
    absorption, _ = pra.inverse_sabine(room.rt60, list(room.size))
    sim = pra.ShoeBox(list(room.size), fs=SAMPLE_RATE, materials=pra.Material(absorption, _SCATTERING),
                      max_order=_ISM_ORDER, ray_tracing=True, air_absorption=False)
    sim.set_ray_tracing(receiver_radius=0.5, n_rays=_RAYS, energy_thres=1e-5)
    sim.add_source(list(room.talker))
    sim.add_microphone(list(room.microphone))
    with library_loops_replaced():  # the same response, its reverberant tail built 3x faster
        sim.compute_rir()
    rir = np.asarray(sim.rir[0][0], dtype=np.float64)
    # pyroomacoustics delays everything by the travel time and its fractional-delay filter: start the
    # response at its strongest tap (the direct sound) so reverberated speech keeps its timing.
    return (rir[int(np.argmax(np.abs(rir))):] / np.max(np.abs(rir))).astype(np.float32)
