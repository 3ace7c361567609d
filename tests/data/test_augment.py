import numpy as np
import pytest

from xlsr.data.augment import (
    DEFAULT_AUGMENT,
    PEAK,
    AugmentSpec,
    Effect,
    EffectDraw,
    apply_effects,
    augmented_length,
    babble_noise,
    band_limit,
    change_speed,
    draw_effect_table,
    draw_effects,
    item_key,
    make_noise,
    mix_at_snr,
    parse_augment,
    reverberate,
)
from xlsr.data.rooms import draw_room, impulse_response, simulate
from xlsr.errors import XlsrError

SR = 16000


@pytest.fixture(autouse=True)
def room_cache(tmp_path, monkeypatch):
    """Simulated rooms go to a test folder, not the user's cache."""
    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    impulse_response.cache_clear()


def speechlike(seconds=1.5, seed=0):
    """Noise bursts with gaps: a signal with speech's on/off envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


def test_parse_spec_defaults_ranges_and_round_trip():
    spec = parse_augment("reverb=0.3,noise=0.5:5-30,speed=0.3:0.9-1.1,bandlimit=0.2")
    assert spec.reverb == Effect(0.3, 0.2, 0.8) and spec.noise == Effect(0.5, 5.0, 30.0)
    assert spec.speed == Effect(0.3, 0.9, 1.1) and spec.bandlimit == Effect(0.2, 3000.0, 6000.0)
    assert parse_augment(str(spec)) == spec and parse_augment("default") == parse_augment(DEFAULT_AUGMENT)
    assert parse_augment("noise=1:-5-10").noise == Effect(1.0, -5.0, 10.0)
    for off in ("none", "", None, "off"):
        assert parse_augment(off) == AugmentSpec() and not parse_augment(off).enabled
    assert not parse_augment("noise=0").enabled


@pytest.mark.parametrize("text, message", [
    ("noise=1.5", r"augment 'noise=1.5': the share of utterances must be in \[0, 1\], got 1.5"),
    ("speed=0.5:0.3-1.1", r"augment 'speed=0.5:0.3-1.1': the speed factor range 0.3-1.1 is outside 0.5-2"),
    ("noise=0.5:30-5", r"the SNR in dB range 30-5 has its low end above its high end"),
    ("reverb=0.5:0.1-0.5", r"RT60 in seconds range 0.1-0.5 is outside 0.15-1.2"),
    ("bandlimit=0.2:3000-9000", r"upper band edge in Hz range 3000-9000 is outside 1000-7800"),
    ("echo=0.5", r"augment 'echo=0.5': unknown effect 'echo'"),
    ("noise=0.5,noise=0.2", r"noise is given twice"),
    ("noise=half", r"augment 'noise=half': expected noise=SHARE or noise=SHARE:LOW-HIGH"),
    ("noise", r"expected noise=SHARE"),
])
def test_bad_spec_is_one_line_naming_the_effect(text, message):
    with pytest.raises(XlsrError, match=message) as err:
        parse_augment(text)
    assert "\n" not in str(err.value)


def test_draws_are_deterministic_per_key_and_independent_per_effect():
    spec = parse_augment("reverb=0.5,noise=0.5,speed=0.5,bandlimit=0.5")
    keys = [item_key(7, f"it-train-{i:05d}") for i in range(200)]
    draws = [draw_effects(spec, k, room_seed=7) for k in keys]
    assert draws == [draw_effects(spec, k, room_seed=7) for k in keys]
    assert item_key(7, "it-train-00001") == item_key(7, "it-train-00001") != item_key(8, "it-train-00001")
    # each effect on about its share of utterances
    for name in ("speed", "room", "snr_db", "band_hz"):
        share = np.mean([d is not None and getattr(d, name) is not None for d in draws])
        assert 0.35 < share < 0.65, name
    # switching speed off leaves the other effects' draws as they were
    no_speed = parse_augment("reverb=0.5,noise=0.5,bandlimit=0.5")

    def others(d):
        return (None,) * 4 if d is None else (d.room, d.snr_db, d.noise_kind, d.band_hz)

    assert [others(draw_effects(no_speed, k, room_seed=7)) for k in keys] == [others(d) for d in draws]
    assert {d.noise_kind for d in draws if d is not None and d.noise_kind} == {"white", "pink", "brown", "babble"}
    values = [d.snr_db for d in draws if d is not None and d.snr_db is not None]
    assert 5 <= min(values) and max(values) <= 30


def test_only_speed_changes_the_length_and_results_repeat():
    x = speechlike()
    talkers = [speechlike(2.0, seed=s) for s in (1, 2, 3)]
    spec = parse_augment("reverb=1:0.2-0.4,noise=1,bandlimit=1")
    for i in range(6):
        draw = draw_effects(spec, item_key(0, i), room_seed=0)
        draw = EffectDraw(**{**draw.__dict__, "noise_kind": ("white", "pink", "brown", "babble")[i % 4]})
        y = apply_effects(x, draw, babble=talkers)
        assert len(y) == len(x) == augmented_length(len(x), draw) and y.dtype == np.float32
        assert np.array_equal(y, apply_effects(x, draw, babble=talkers))
        assert not np.allclose(y, x) and np.max(np.abs(y)) <= 0.99 + 1e-6
    for factor in (0.9, 0.97, 1.1):
        draw = EffectDraw(key=(0,), speed=factor)
        y = apply_effects(x, draw)
        assert len(y) == augmented_length(len(x), draw) == round(len(x) / factor)
    assert apply_effects(x, None) is x  # an utterance without effects is left alone


def test_speed_scales_frequency_and_duration():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 440 * t)
    for factor in (0.9, 1.1):
        y = change_speed(tone, factor)
        peak = np.argmax(np.abs(np.fft.rfft(y * np.hanning(len(y))))) * SR / len(y)
        assert abs(peak - 440 * factor) < 3
        assert len(y) == round(SR / factor)


def test_noise_is_mixed_at_the_asked_snr():
    x = speechlike()
    rng = np.random.default_rng(0)
    talkers = [speechlike(2.0, seed=s) for s in (1, 2, 3)]
    for kind in ("white", "pink", "brown", "babble"):
        noise = make_noise(kind, len(x), rng, talkers)
        assert len(noise) == len(x)
        for snr in (-5.0, 5.0, 17.5, 30.0):
            y = mix_at_snr(x.astype(np.float64), noise, snr)
            achieved = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x) ** 2))
            assert abs(achieved - snr) < 0.01, (kind, snr, achieved)
    # through apply_effects (and its peak limiter, which scales speech and noise alike)
    draw = EffectDraw(key=(3,), snr_db=5.0, noise_kind="pink")
    y = apply_effects(x, draw).astype(np.float64)
    gain = np.dot(y, x) / np.dot(x, x)  # the limiter's gain; the noise is nearly orthogonal to x
    achieved = 10 * np.log10(np.mean((gain * x) ** 2) / np.mean((y - gain * x) ** 2))
    assert abs(achieved - 5.0) < 0.1
    with pytest.raises(XlsrError, match="babble noise needs other utterances"):
        make_noise("babble", 100, rng, None)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(1)
    f = np.fft.rfftfreq(2 ** 16, 1 / SR)
    for kind, slope in (("white", 0), ("pink", -1), ("brown", -2)):
        power = np.abs(np.fft.rfft(make_noise(kind, 2 ** 16, rng))) ** 2
        high, low = power[(f >= 3200) & (f < 4800)].mean(), power[(f >= 200) & (f < 300)].mean()
        measured = np.log10(high / low) / np.log10(4000 / 250)
        assert abs(measured - slope) < 0.25, (kind, measured)


def test_band_limit_removes_what_is_above_the_band_edge():
    x = np.random.default_rng(2).standard_normal(2 * SR + 7)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    px = np.abs(np.fft.rfft(x)) ** 2

    def gain_db(y, lo, hi):
        band = (f >= lo) & (f < hi)
        return 10 * np.log10((np.abs(np.fft.rfft(y)) ** 2)[band].sum() / px[band].sum())

    for edge in (3400.0, 5123.4):
        y = band_limit(x, edge)
        assert len(y) == len(x)
        assert abs(gain_db(y, 50, 0.9 * edge)) < 0.5  # the band stays, in time with the input
        assert np.corrcoef(x, y)[0, 1] > 0.9 * np.sqrt(edge / 8000)
        assert gain_db(y, 1.05 * edge, 8000) < -40  # above the edge: gone


def test_reverb_room_decays_at_its_rt60_and_keeps_length_and_level():
    for index in (0, 1, 2):
        room = draw_room(5, index, (0.3, 0.7))
        assert room == draw_room(5, index, (0.3, 0.7)) and 0.3 <= room.rt60 <= 0.7
        rir = impulse_response(room)
        assert np.argmax(np.abs(rir)) == 0  # starts at the direct sound: no delay added
        # Schroeder backward integration: time for the energy to fall from -5 to -25 dB, times 3
        energy = np.cumsum((rir.astype(np.float64) ** 2)[::-1])[::-1]
        decay = 10 * np.log10(energy / energy[0])
        t5, t25 = np.argmax(decay <= -5) / SR, np.argmax(decay <= -25) / SR
        rt60 = 3 * (t25 - t5)
        # Sabine's design value; the simulated room measured 0.79-0.93x it (rooms.py)
        assert 0.65 * room.rt60 < rt60 < 1.1 * room.rt60, (room.rt60, rt60)
    x = speechlike()
    y = reverberate(x.astype(np.float64), rir)
    assert len(y) == len(x)
    assert np.isclose(np.mean(y ** 2), np.mean(x.astype(np.float64) ** 2))
    # the gaps of the speech-like signal fill with the tail
    gaps = np.sin(2 * np.pi * 3 * np.arange(len(x)) / SR) <= 0
    assert np.mean(y[gaps] ** 2) > 0.05 * np.mean(y ** 2) and np.mean(x[gaps] ** 2) == 0


def test_rooms_are_simulated_deterministically_and_cached_on_disk(tmp_path):
    room = draw_room(1, 3, (0.2, 0.4))
    assert np.array_equal(simulate(room), simulate(room))  # the ray tracer is seeded by the room
    first = impulse_response(room)
    files = list((tmp_path / "cache" / "rooms").glob("*.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), first)
    impulse_response.cache_clear()
    assert np.array_equal(impulse_response(room), first)  # read back from the cache


def test_an_epochs_drawn_parameters_cover_their_whole_range_whatever_the_share():
    """The value comes from a uniform of its own, not from the one that decides on/off (which is below the share)."""
    table = draw_effect_table(parse_augment("speed=0.3:0.9-1.1,noise=0.3:5-30"), (0, 0, 166), 4000)
    for column, low, high in (("speed", 0.9, 1.1), ("snr_db", 5.0, 30.0)):
        values = table[column][~np.isnan(table[column])]
        assert 1000 < len(values) < 1400, column  # about 30% of the items
        quarters = np.histogram(values, bins=4, range=(low, high))[0] / len(values)
        assert np.all(np.abs(quarters - 0.25) < 0.05), (column, quarters)  # uniform over low-high


def test_babble_talkers_are_summed_at_unit_power_each():
    """A talker's level does not matter: constant talkers of levels 0.001 to 30 add 1 each, so every sample of the
    babble is the number of talkers drawn, 3 to 6 (BABBLE_TALKERS)."""
    talkers = [np.full(50, 0.001), np.full(70, 30.0), np.full(40, 2.0)]
    drawn = []
    for seed in range(12):
        y = babble_noise(1000, np.random.default_rng(seed), talkers)
        assert np.allclose(y, np.round(y[0]), rtol=0, atol=1e-6), (seed, y[:3])
        drawn.append(round(y[0]))
    assert set(drawn) <= {3, 4, 5, 6} and len(set(drawn)) > 1


def test_a_loud_mix_is_scaled_down_to_the_peak_never_clipped():
    x = (0.9 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    y = apply_effects(x, EffectDraw(key=(0,), snr_db=-10.0, noise_kind="white"))  # noise 10 dB above the tone
    assert np.isclose(np.max(np.abs(y)), PEAK, rtol=0, atol=1e-6)
    gain = np.dot(y, x) / np.dot(x, x)  # speech and noise scaled alike: the SNR stays -10 dB
    achieved = 10 * np.log10(np.mean((gain * x) ** 2) / np.mean((y - gain * x) ** 2))
    assert gain < 0.3 and abs(achieved + 10.0) < 0.1
