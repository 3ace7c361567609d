"""Hostile checkpoint files, built opcode by opcode: loading one refuses it in one line and runs nothing from it.

Each payload would create a marker file if it ran (os.system("touch ..."), open(..., "w")); the tests load through
the public entry points (load_pretrained, read_fairseq_checkpoint) and check the marker is absent.
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import struct
import tarfile
import zipfile

import pytest
import torch

from xlsr.config import read_yaml
from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop import safe_pickle
from xlsr.interop.fairseq import read_fairseq_checkpoint
from xlsr.interop.load import load_pretrained


# ---------------------------------------------------------------------------- opcodes
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL (protocol 0 on)


def _stack_global(module: str, name: str) -> bytes:
    return _text(module) + _text(name) + b"\x93"  # STACK_GLOBAL (protocol 4 on)


def _text(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()  # BINUNICODE


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"  # func(*args) by REDUCE


def _checkpoint(extra: bytes) -> bytes:
    """A protocol-2 pickle of {"model": {}, "cfg": {"model": {}}, "extra": <extra>}."""
    return b"\x80\x02}(" + _text("model") + b"}" + _text("cfg") + b"}" + _text("model") + b"}s" + _text("extra") + \
        extra + b"u."


def _torch_zip(path, data_pkl: bytes, records: dict[str, bytes] | None = None) -> None:
    """A file in torch.save's zip layout (archive/data.pkl, archive/data/<key>, ...)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for name, data in (records or {}).items():
            z.writestr(f"archive/{name}", data)


def _refused(path, *, loader=load_pretrained) -> str:
    with pytest.raises(CheckpointError) as exc:
        loader(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------- globals that run code
def _payloads(marker) -> dict[str, bytes]:
    touch, write = _text(f"touch {marker}"), _text(f"open({str(marker)!r}, 'w')")
    system = _global("os", "system")
    return {
        "os.system": _call(system, touch),
        "posix.system": _call(_global("posix", "system"), touch),
        "stack_global builtins.exec": _call(_stack_global("builtins", "exec"), write),
        "builtins.eval": _call(_global("builtins", "eval"), write),
        "py2 spelling __builtin__.eval": _call(_global("__builtin__", "eval"), write),
        "__import__ then getattr": _call(_call(_global("builtins", "getattr"),
                                               _call(_global("builtins", "__import__"), _text("os")),
                                               _text("system")), touch),
        "subprocess.Popen": _call(_global("subprocess", "Popen"), b"(" + _text("touch") + _text(str(marker)) + b"l"),
        "functools.partial": _call(_call(_global("functools", "partial"), system, touch)),
        "operator.attrgetter": _call(_global("operator", "attrgetter"), _text("system")),
        "operator.methodcaller": _call(_global("operator", "methodcaller"), _text("system"), touch),
        "OrderedDict holding a payload": _call(_global("collections", "OrderedDict"),
                                               b"((" + _text("k") + _call(system, touch) + b"tl"),
        "copyreg._reconstructor of Popen": _call(_global("copy_reg", "_reconstructor"), _global("subprocess", "Popen"),
                                                 _global("__builtin__", "object"), b"N"),
        "_rebuild_from_type_v2 of os.system": _call(_global("torch._tensor", "_rebuild_from_type_v2"), system,
                                                    _global("torch", "Tensor"), b"(" + touch + b"t", b"}"),
        "torch.storage._load_from_bytes": _call(_global("torch.storage", "_load_from_bytes"), b"C\x00"),
        "torch.load": _call(_global("torch", "load"), _text(str(marker))),
        "numpy.load": _call(_global("numpy", "load"), _text(str(marker))),
        "numpy.ma reconstruct": _call(_global("numpy.ma.core", "_mareconstruct"), b"NNNN"),
        "argparse.Namespace BUILD __setstate__": _call(_global("argparse", "Namespace")) +
        b"}" + _text("__setstate__") + system + b"sb",
        "omegaconf DictConfig holding a payload": _call(_global("omegaconf.dictconfig", "DictConfig"),
                                                        _call(system, touch)),
        "INST os.system": b"(" + touch + b"ios\nsystem\n",
        "OBJ os.system": b"(" + system + touch + b"o",
        "a Storage-named global of another module": _call(_global("os", "systemStorage"), touch),
    }


@pytest.mark.parametrize("name", list(_payloads("m")))
@pytest.mark.parametrize("zipped", [False, True], ids=["legacy", "zip"])
def test_a_global_that_runs_code_is_refused_and_not_run(tmp_path, name, zipped):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    data = _checkpoint(_payloads(marker)[name])
    if zipped:
        _torch_zip(path, data)
    else:
        path.write_bytes(data)
    msg = _refused(path)
    assert "refused" in msg
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1])
def test_old_protocols_are_refused_too(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    touch = b"V" + f"touch {marker}".encode() + b"\n"  # UNICODE: protocol 0
    path.write_bytes(b"(dp0\nVmodel\n(dsVx\n" + _global("os", "system") + b"(" + touch + b"tRs." if protocol == 0
                     else b"}(X\x05\x00\x00\x00model}X\x01\x00\x00\x00x" + _global("os", "system") + b"(" + touch +
                     b"tRu.")  # fmt: skip
    assert "refused to load os.system" in _refused(path, loader=read_fairseq_checkpoint)
    assert not marker.exists()


def test_an_extension_code_resolves_through_the_allow_list(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    copyreg.add_extension("os", "system", 240)
    try:
        path.write_bytes(_checkpoint(b"\x82\xf0(" + _text(f"touch {marker}") + b"tR"))  # EXT1 240
        assert "refused to load os.system" in _refused(path)
    finally:
        copyreg.remove_extension("os", "system", 240)
    assert not marker.exists()


# ---------------------------------------------------------------------------- archives torch.load would not unpickle
class Scripted(torch.nn.Module):
    """A TorchScript module whose __setstate__, run by torch.jit.load, prints a line."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        print("SCRIPTED_SETSTATE_RAN")
        self.w = state[0]
        self.training = state[1]


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_torchscript_archive_is_refused_and_its_code_never_runs(tmp_path, capfd):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(Scripted()), str(path))
    for loader in (load_pretrained, read_fairseq_checkpoint):
        assert "a TorchScript archive (it holds code, which xlsr never runs)" in _refused(path, loader=loader)
    assert "SCRIPTED_SETSTATE_RAN" not in capfd.readouterr().out


def test_a_legacy_tar_checkpoint_is_refused_before_anything_is_extracted(tmp_path):
    # torch's pre-1.0 tar reader extracts `storages` and `tensors` to a temporary folder and opens them: as links,
    # they would read files anywhere (here ones that make a loadable checkpoint; a FIFO would hang it).
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "zero.pkl").write_bytes(pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2))
    path = tmp_path / "old.pt"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        junk = tarfile.TarInfo("\x80junk")  # a first name starting with byte 0x80, so the file looks like a pickle
        tar.addfile(junk, io.BytesIO(b""))
        for name in ("storages", "tensors"):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, str(outside / "zero.pkl")
            tar.addfile(link)
        body = pickle.dumps({"model": {}, "cfg": {"model": {}}}, protocol=2)
        member = tarfile.TarInfo("pickle")
        member.size = len(body)
        tar.addfile(member, io.BytesIO(body))
    assert path.read_bytes()[:1] == b"\x80"
    for loader in (load_pretrained, read_fairseq_checkpoint):
        assert "a tar archive (torch's pre-1.0 format" in _refused(path, loader=loader)


@pytest.mark.parametrize("persistent_id", [
    b"(" + _text("module") + _global("collections", "OrderedDict") + b"NNtQ",  # not a storage
    b"(" + _text("storage") + _global("torch", "FloatStorage") + _text("../../../../etc/passwd") + _text("cpu") +
    b"K\x04tQ",  # a record outside the archive's data/
], ids=["module", "path"])  # fmt: skip
def test_an_unexpected_persistent_id_is_one_line(tmp_path, persistent_id):
    path = tmp_path / "evil.pt"
    _torch_zip(path, _checkpoint(persistent_id), {"data/0": b"\0" * 16})
    assert "not a readable torch/fairseq checkpoint" in _refused(path)


def _tensor(numel: int, size: int, offset: int = 0, stride: int = 1, hooks: bytes = b"") -> bytes:
    storage = b"(" + _text("storage") + _global("torch", "FloatStorage") + _text("0") + _text("cpu") + \
        b"\x8a\x08" + struct.pack("<q", numel) + b"tQ"
    hooks = _call(_global("collections", "OrderedDict"), *([hooks] if hooks else []))
    return _call(_global("torch._utils", "_rebuild_tensor_v2"), storage, b"\x8a\x08" + struct.pack("<q", offset),
                 b"(\x8a\x08" + struct.pack("<q", size) + b"t", b"(\x8a\x08" + struct.pack("<q", stride) + b"t",
                 b"\x89", hooks)


@pytest.mark.parametrize("numel, size, offset", [(10**12, 10**12, 0), (4, 10**6, 0), (4, 4, 10**6)],
                         ids=["storage of 10**12 elements", "view beyond its storage", "offset beyond its storage"])
def test_a_tensor_larger_than_its_data_is_one_line(tmp_path, numel, size, offset):
    path = tmp_path / "evil.pt"
    _torch_zip(path, _checkpoint(_tensor(numel, size, offset)), {"data/0": b"\0" * 16})
    assert "not a readable torch/fairseq checkpoint" in _refused(path)


def test_a_legacy_storage_claiming_10_to_the_15_elements_is_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    storage = b"(" + _text("storage") + _global("torch", "FloatStorage") + _text("0") + _text("cpu") + \
        b"\x8a\x08" + struct.pack("<q", 10**15) + b"NtQ"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2) +
                     pickle.dumps({}, protocol=2) + _checkpoint(storage))
    _refused(path)


# ---------------------------------------------------------------------------- a few bytes asking for gigabytes
def _laughs(depth: int) -> bytes:
    """A list holding one list ten times, which holds one list ten times, ... `depth` levels: 10**depth leaves."""
    out = b"]q\x00"
    for level in range(1, depth + 1):
        out += b"0(" + (b"h" + bytes([level - 1])) * 10 + b"lq" + bytes([level])  # POP, MARK, 10 x GET, LIST, PUT
    return out


@pytest.mark.parametrize("build, what", [
    (_call(_global("__builtin__", "bytes"), b"\x8a\x05\x00\x00\x00\x00\x01"), "bytes from 4294967296"),
    (_call(_global("__builtin__", "bytearray"), b"\x8a\x05\x00\x00\x00\x00\x01"), "bytearray from 4294967296"),
    (_call(_global("__builtin__", "list"), _call(_global("__builtin__", "xrange"), b"J\x00\xca\x9a\x3b")),
     "range from 1000000000"),  # the range itself is refused: 10**9 numbers
    (_call(_global("__builtin__", "tuple"), _call(_global("__builtin__", "xrange"), b"K\x03")), "tuple from a range"),
    (_call(_global("__builtin__", "unicode"), _laughs(9)), "str from a list"),
    (_call(_global("numpy", "float64"), _laughs(9)), "float64 from a list"),
    (_call(_global("__builtin__", "list"), _tensor(1, 10**12, stride=0)), "list from a Tensor"),
], ids=["bytes", "bytearray", "list of range", "tuple of range", "str", "numpy scalar", "list of tensor"])  # fmt: skip
def test_a_constructor_that_would_build_far_more_than_the_file_holds_is_refused(tmp_path, build, what):
    path = tmp_path / "evil.pt"
    _torch_zip(path, _checkpoint(build), {"data/0": b"\0" * 16})
    assert f"refused to build {what} in a pickle (it could take far more memory than the file holds)" in _refused(path)


def test_a_list_shared_many_times_is_converted_once(tmp_path):
    path = tmp_path / "shared.pt"
    _torch_zip(path, _checkpoint(_laughs(5)))
    got = read_fairseq_checkpoint(path)["extra"]
    assert len(got) == 10 and got[0] is got[9] and got[0][0] is got[3][7]  # shared as in the pickle, not copied


def test_a_config_with_too_many_values_counting_shared_parts_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_pickle, "MAX_CONFIG_VALUES", 1000)
    path = tmp_path / "shared.pt"
    data = b"\x80\x02}(" + _text("model") + b"}" + _text("cfg") + b"}(" + _text("model") + b"}" + _text("x") + \
        _laughs(4) + b"uu."
    _torch_zip(path, data)
    assert "refused a config of more than 1,000 values" in _refused(path)


def test_backward_hooks_and_attributes_from_the_file_are_dropped(tmp_path):
    # torch.save writes neither (it refuses to serialize hooks); a file that carries them gets plain tensors.
    hook = b"((K\x00" + _global("collections", "OrderedDict") + b"tl"  # {0: OrderedDict}: a callable as a hook
    param = _call(_global("torch._utils", "_rebuild_parameter_with_state"), _tensor(4, 4, hooks=hook), b"\x89",
                  _call(_global("collections", "OrderedDict"), hook), b"}(" + _text("marked") + b"\x88u")
    path = tmp_path / "hooked.pt"
    _torch_zip(path, _checkpoint(b"}(" + _text("t") + _tensor(4, 4, hooks=hook) + _text("p") + param + b"u"),
               {"data/0": b"\0" * 16})
    got = read_fairseq_checkpoint(path)["extra"]
    assert torch.equal(got["t"], torch.zeros(4)) and torch.equal(got["p"], torch.zeros(4))
    assert isinstance(got["p"], torch.nn.Parameter) and not hasattr(got["p"], "marked")
    assert not got["t"]._backward_hooks and not got["p"]._backward_hooks


def test_setting_a_tensors_state_by_build_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    state = b"(\x89N" + _call(_global("collections", "OrderedDict"), b"((K\x00" + _global("collections", "OrderedDict") + b"tl")
    _torch_zip(path, _checkpoint(_tensor(4, 4) + state + b"tb"), {"data/0": b"\0" * 16})
    assert "refused" in _refused(path)


def test_torch_save_checkpoints_still_load_unchanged(tmp_path):
    obj = {"model": collections.OrderedDict(w=torch.randn(3), p=torch.nn.Parameter(torch.ones(2))),
           "cfg": {"model": {"layers": list(range(3)), "r": range(4)}}, "b": b"\x00\xff", "s": "text"}
    for zipped in (True, False):
        path = tmp_path / f"ok{zipped}.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=zipped)
        got = read_fairseq_checkpoint(path)
        assert torch.equal(got["model"]["w"], obj["model"]["w"]) and got["cfg"]["model"]["r"] == range(4)
        assert got["b"] == b"\x00\xff" and got["cfg"]["model"]["layers"] == [0, 1, 2]


# ---------------------------------------------------------------------------- YAML configs and recipes
def test_a_yaml_python_object_tag_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "recipe.yaml"
    path.write_text(f"lr: 0.1\nevil: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(XlsrError) as exc:
        read_yaml(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: not valid YAML") and "python/object/apply:os.system" in msg and "\n" not in msg
    assert not marker.exists()
