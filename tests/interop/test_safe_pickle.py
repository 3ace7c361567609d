"""The restricted unpickler: payloads are refused (and never run); fairseq's config objects become plain data."""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import struct
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch

from xlsr.errors import CheckpointError
from xlsr.interop import safe_pickle
from xlsr.interop.fairseq import read_fairseq_checkpoint
from xlsr.interop.load import load_pretrained


class _System:
    """Unpickling this runs `os.system(cmd)` in an ordinary unpickler."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


class _Popen:
    def __init__(self, argv):
        self.argv = argv

    def __reduce__(self):
        return (subprocess.Popen, (self.argv,))


def _touch(marker) -> str:
    return f"touch {marker}"


def test_payload_really_runs_with_plain_pickle(tmp_path):
    # Proves the payload used below is live: the ordinary unpickler creates the marker.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_System(_touch(marker)), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
def test_os_system_payload_is_refused_and_not_run(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    ckpt = {"model": {"w": torch.zeros(2)}, "cfg": {"model": {}}, "extra": _System(_touch(marker))}
    path = tmp_path / "evil.pt"
    if zip_format:
        torch.save(ckpt, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(ckpt, f, protocol=2)
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(path)
    assert not marker.exists()
    msg = str(exc.value)
    assert str(path) in msg and "refused to load" in msg and "system" in msg and "\n" not in msg


@pytest.mark.parametrize("payload", ["eval", "popen"])
def test_other_payloads_are_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _Eval(f"open({str(marker)!r}, 'w')") if payload == "eval" else _Popen(["touch", str(marker)])
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "args": evil}, path)
    with pytest.raises(CheckpointError, match=r"refused to load \w+\.(eval|Popen):"):
        read_fairseq_checkpoint(path)
    assert not marker.exists()


def test_unpickler_refuses_dangerous_globals_directly():
    for module, name in [("os", "system"), ("builtins", "getattr"), ("builtins", "__import__"),
                         ("builtins", "exec"), ("torch", "load"), ("numpy", "load"), ("shutil", "rmtree")]:  # fmt: skip
        with pytest.raises(safe_pickle.UnsafePickleError):
            safe_pickle.Unpickler(__import__("io").BytesIO(b"")).find_class(module, name)


@pytest.mark.parametrize("zip_format", [True, False])
def test_tensors_parameters_and_containers_survive(tmp_path, zip_format):
    # The legacy format keeps its tensors' bytes after the pickles: the unpickler must stop exactly at its end.
    state = collections.OrderedDict(w=torch.randn(3, 4), p=torch.nn.Parameter(torch.ones(2)),
                                    h=torch.arange(6, dtype=torch.int64).view(2, 3)[:, 1:])  # a strided view
    obj = {"model": state, "extra_state": {"metrics": {"loss": np.float64(1.5), "arr": np.arange(3)}},
           "optimizer_history": [{"num_updates": 7}], "s": {1, 2}, "t": (1, "a"), "b": b"\x00\xffbytes"}  # fmt: skip
    path = tmp_path / "ok.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    got = safe_pickle.to_plain(torch.load(path, pickle_module=safe_pickle, weights_only=False))
    for k, v in state.items():
        assert torch.equal(got["model"][k], v)
    assert isinstance(got["model"]["p"], torch.nn.Parameter)
    assert got["extra_state"]["metrics"]["loss"] == 1.5
    assert got["extra_state"]["metrics"]["arr"].tolist() == [0, 1, 2]
    assert got["optimizer_history"] == [{"num_updates": 7}] and got["s"] == {1, 2} and got["t"] == (1, "a")
    assert got["b"] == b"\x00\xffbytes"


def _fake_omegaconf():
    """Classes pickled under omegaconf's real module names, laid out like its objects (`_content`, `_val`)."""
    dictconfig = types.ModuleType("omegaconf.dictconfig")
    listconfig = types.ModuleType("omegaconf.listconfig")
    nodes = types.ModuleType("omegaconf.nodes")
    base = types.ModuleType("omegaconf.base")
    for module, names in ((dictconfig, ["DictConfig"]), (listconfig, ["ListConfig"]),
                          (nodes, ["AnyNode", "StringNode"]), (base, ["ContainerMetadata"])):  # fmt: skip
        for name in names:
            cls = type(name, (), {"__module__": module.__name__})
            setattr(module, name, cls)
    return dictconfig, listconfig, nodes, base


def test_omegaconf_like_config_becomes_plain_data(tmp_path, monkeypatch):
    dictconfig, listconfig, nodes, base = _fake_omegaconf()
    monkeypatch.setitem(sys.modules, "omegaconf", types.ModuleType("omegaconf"))
    for m in (dictconfig, listconfig, nodes, base):
        monkeypatch.setitem(sys.modules, m.__name__, m)

    def node(cls, value, parent):
        n = cls()
        n.__dict__.update(_val=value, _parent=parent, _metadata=base.ContainerMetadata())
        return n

    root = dictconfig.DictConfig()
    model = dictconfig.DictConfig()
    layers = listconfig.ListConfig()
    meta = base.ContainerMetadata()
    meta.__dict__.update(ref_type=__import__("typing").Any, object_type=dict, key_type=__import__("typing").Any)
    layers.__dict__.update(_content=[node(nodes.AnyNode, 2.0, layers), node(nodes.AnyNode, 0.5, layers)],
                           _parent=model, _metadata=meta)
    model.__dict__.update(_content={"extractor_mode": node(nodes.StringNode, "layer_norm", model),
                                    "latent_temp": layers, "encoder_layers": node(nodes.AnyNode, 3, model)},
                          _parent=root, _metadata=meta)  # fmt: skip
    root.__dict__.update(_content={"model": model, "task": None}, _parent=None, _metadata=meta)
    ns = argparse.Namespace(arch="wav2vec2", normalize=True, conv_feature_layers="[(512, 10, 5)]")
    path = tmp_path / "cfg.pt"
    torch.save({"cfg": root, "args": ns, "model": {"w": torch.ones(1)}}, path)

    got = read_fairseq_checkpoint(path)
    assert got["cfg"] == {"model": {"extractor_mode": "layer_norm", "latent_temp": [2.0, 0.5], "encoder_layers": 3},
                          "task": None}
    assert got["args"] == {"arch": "wav2vec2", "normalize": True, "conv_feature_layers": "[(512, 10, 5)]"}
    assert torch.equal(got["model"]["w"], torch.ones(1))


def test_a_fault_of_our_own_reading_code_is_not_reported_as_a_damaged_file(tmp_path, monkeypatch):
    # Damage meets only the parse; a bug in what runs over the parsed data must surface as itself.
    path = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(1)}, "cfg": {"model": {}}}, path)

    def broken(*args, **kwargs):
        raise TypeError("a bug in to_plain")

    monkeypatch.setattr(safe_pickle, "to_plain", broken)
    with pytest.raises(TypeError, match="a bug in to_plain"):
        read_fairseq_checkpoint(path)


def test_not_a_checkpoint_and_truncated_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello, this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pt: not a checkpoint"):
        load_pretrained(text)
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.randn(100, 100)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:20000])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable torch/fairseq checkpoint"):
        load_pretrained(truncated)
    no_model = tmp_path / "no_model.pt"
    torch.save({"weights": 1}, no_model)
    with pytest.raises(CheckpointError, match="no_model.pt: not a fairseq checkpoint"):
        load_pretrained(no_model)
    with pytest.raises(CheckpointError, match="missing.pt: no such file"):
        load_pretrained(tmp_path / "missing.pt")


class _Reduce:
    """Pickles as `func(*args)` followed, when `state` is given, by BUILD with `state`."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


_MULTIARRAY = getattr(np, "_core", None) and np._core.multiarray or np.core.multiarray  # numpy 2 / 1

# A dtype state that declares an object field while its flags say "holds no objects": numpy's own
# __setstate__ accepts it, and the array's bytes would then be read as object addresses.
_FORGED_DTYPE = _Reduce(np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))


@pytest.mark.parametrize("payload", [
    _Reduce(np.ndarray, ((1,), _FORGED_DTYPE, b"\0" * 8)),  # the array built directly from file bytes
    _Reduce(_MULTIARRAY.scalar, (_FORGED_DTYPE, b"\0" * 8)),  # a scalar of that dtype
    _Reduce(_MULTIARRAY._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), _FORGED_DTYPE, False, b"\0" * 8)),
    _Reduce(_MULTIARRAY._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), np.dtype("O"), False, [None])),
], ids=["ndarray-call", "scalar", "reconstruct-forged", "object-array"])
def test_numpy_data_with_objects_is_refused(payload):
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.to_plain(safe_pickle.loads(pickle.dumps({"x": payload}, protocol=4)))


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_numbers_come_back_as_written(protocol):
    arrays = {"c": np.arange(12, dtype=np.float32).reshape(3, 4), "f": np.asfortranarray(np.arange(6).reshape(2, 3)),
              "big": np.arange(3, dtype=">i4"), "b": np.array([True, False]), "z": np.zeros((0, 2))}  # fmt: skip
    scalars = {"s": np.float64(2.5), "i": np.int32(-3)}
    got = safe_pickle.to_plain(safe_pickle.loads(pickle.dumps({**arrays, **scalars}, protocol=protocol)))
    for key, value in arrays.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape
        assert np.array_equal(got[key], value)
    assert got["s"] == 2.5 and got["i"] == -3 and got["i"].dtype == np.int32


def test_a_config_that_holds_itself_is_one_line(tmp_path):
    cfg: dict = {"model": {}}
    cfg["model"]["parent"] = cfg  # plain containers are not stubs: only recursion would end this
    path = tmp_path / "loop.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": cfg}, path)
    with pytest.raises(CheckpointError, match="nested too deeply or holds itself"):
        read_fairseq_checkpoint(path)


# ---------------------------------------------------------------------------- damaged files: one line, no traceback
def _legacy_with_extra(path, extra) -> bytes:
    """A legacy-format (protocol 2) checkpoint holding `extra`; its bytes, to be damaged by the caller."""
    torch.save({"model": {"w": torch.zeros(2)}, "cfg": {"model": {}}, "extra_state": extra}, path,
               _use_new_zipfile_serialization=False)
    return path.read_bytes()


def _unknown_numpy_dtype(path):
    data = _legacy_with_extra(path, {"best": np.arange(4, dtype=np.float64)})
    assert data.count(b"X\x02\x00\x00\x00f8") == 1
    path.write_bytes(data.replace(b"X\x02\x00\x00\x00f8", b"X\x02\x00\x00\x00f3"))  # no numpy dtype is 'f3'
    return ": refused numpy dtype 'f3' in a pickle (numpy has no such type)"


def _unknown_codec(path):
    data = _legacy_with_extra(path, {"blob": b"ABCDEFGH"})  # protocol 2: _codecs.encode('ABCDEFGH', 'latin1')
    assert data.count(b"X\x06\x00\x00\x00latin1") == 1
    path.write_bytes(data.replace(b"X\x06\x00\x00\x00latin1", b"X\x06\x00\x00\x00nocdec"))
    return "(unknown encoding: nocdec)"


def _huge_length_field(path):
    # The bytes' text becomes BINBYTES8 claiming 2**44 bytes: Python's C unpickler allocates that before reading.
    data = _legacy_with_extra(path, {"blob": b"ABCDEFGH"})
    at = data.index(b"X\x08\x00\x00\x00ABCDEFGH")
    path.write_bytes(data[:at] + b"\x8e" + struct.pack("<Q", 2**44) + data[at + 5:])
    return "(a length field asks for 17,592,186,044,416 bytes; only "


@pytest.mark.parametrize("damage", [_unknown_numpy_dtype, _unknown_codec, _huge_length_field])
def test_damaged_content_is_one_line(tmp_path, damage):
    path = tmp_path / "damaged.pt"
    expected = damage(path)
    with pytest.raises(CheckpointError) as exc:
        read_fairseq_checkpoint(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and expected in msg and "\n" not in msg


@pytest.mark.parametrize("opcodes", [
    b"\x80\x04\x8e" + struct.pack("<Q", 2**44) + b"abc.",  # BINBYTES8
    b"\x80\x05\x96" + struct.pack("<Q", 2**44) + b"abc.",  # BYTEARRAY8
    b"\x80\x04X" + struct.pack("<I", 2**32 - 1) + b"abc.",  # BINUNICODE
    b"\x80\x04\x95" + struct.pack("<Q", 2**50) + b"abc.",  # FRAME
], ids=["binbytes8", "bytearray8", "binunicode", "frame"])
def test_a_length_beyond_the_data_is_refused_before_allocating(opcodes):
    with pytest.raises(pickle.UnpicklingError, match=r"a length field asks for [\d,]+ bytes; only 4 remain"):
        safe_pickle.loads(opcodes)


def _array_of_shape(shape):
    return _Reduce(_MULTIARRAY._reconstruct, (np.ndarray, (0,), b"b"), (1, shape, np.dtype("f4"), False, b""))


@pytest.mark.parametrize("shape, words", [
    ((2**64,) * 40_000, "refused a numpy array of 40000 dimensions in a pickle (numpy allows at most 64)"),
    ((2**64,) * 64, "refused a numpy array of 64 dimensions in a pickle: its shape does not match its 0 bytes"),
], ids=["40000-dims", "64-dims-of-2**64"])
def test_a_damaged_array_shape_is_refused_at_once_in_one_short_line(tmp_path, shape, words):
    # the product of 40000 dimensions of 2**64 took seconds, and the message quoted the whole shape
    path = tmp_path / "shape.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra_state": _array_of_shape(shape)}, path)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as exc:
        read_fairseq_checkpoint(path)
    assert time.perf_counter() - start < 0.5
    msg = str(exc.value)
    assert msg.startswith(f"{path}: {words}") and len(msg) < 300 and "\n" not in msg


def test_a_refused_name_from_the_file_is_clipped(tmp_path):
    path = tmp_path / "long.pt"
    path.write_bytes(b"\x80\x02c" + b"os" + b"x" * 100_000 + b"\nsystem\n)R.")
    with pytest.raises(CheckpointError, match=r"refused to load osxxx+\.\.\.") as exc:
        read_fairseq_checkpoint(path)
    assert len(str(exc.value)) < len(str(path)) + 210 and "\n" not in str(exc.value)


def test_an_object_with_an_odd_state_is_kept_as_none(tmp_path, monkeypatch):
    # A fairseq-named bookkeeping object whose pickled state is (list, dict): not omegaconf's (dict, slots) pair.
    module = types.ModuleType("fairseq.fakemeter")

    class Meter:
        def __getstate__(self):
            return ([1, 2], {"a": 1})

        def __setstate__(self, state):
            pass

    Meter.__module__, Meter.__qualname__ = module.__name__, "Meter"
    module.Meter = Meter
    monkeypatch.setitem(sys.modules, "fairseq", types.ModuleType("fairseq"))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / "meter.pt"
    torch.save({"model": {"w": torch.ones(1)}, "extra_state": {"metrics": Meter()}}, path)
    got = read_fairseq_checkpoint(path)
    assert got["extra_state"] == {"metrics": None} and torch.equal(got["model"]["w"], torch.ones(1))


def test_ctrl_c_while_reading_is_not_turned_into_an_error_line(tmp_path, monkeypatch):
    path = tmp_path / "ok.pt"
    torch.save({"model": {"w": torch.ones(1)}}, path)

    def interrupted(obj, _seen=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(safe_pickle, "to_plain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_fairseq_checkpoint(path)
