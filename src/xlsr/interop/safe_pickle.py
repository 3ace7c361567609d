"""A restricted unpickler for fairseq checkpoints: tensors and plain data come back, code never runs.

A pickle names the callables it wants run (`find_class`); an ordinary unpickler imports and calls
whatever is named, so a `.pt` file can run `os.system`. This one resolves only an allow-list:
containers, torch's tensor/storage rebuild functions, a few numpy reconstructors, and, for the
config objects fairseq pickles (argparse.Namespace, omegaconf DictConfig/ListConfig/nodes, fairseq
and hydra classes), inert stand-in classes that only record the data handed to them. `to_plain`
then turns those stand-ins into dicts and lists. Anything else is refused with UnsafePickleError.

The unpickler is Python's own pure-Python one, reading through `_BoundedReader`: a length field (of a string,
bytes or frame) that asks for more bytes than the file has left is refused before anything is allocated; the C
unpickler allocates first, so a damaged length field could ask for terabytes. A few bytes of pickle can still
describe far more than they hold: a count (`bytes(10**12)`), or a list whose items are ten references to one list
whose items are ten references to one list ..., which is small as a pickle but has 10**9 leaves when flattened
(`str(...)`, `numpy.float64(...)`). So a `range` is built only up to MAX_RANGE numbers, the constructors that
would expand a count, a range, a tensor or a nested list are refused those (`_check_call`), and `to_plain`
converts each shared object once.
Tensors come back without the backward hooks or Python attributes a file may attach to them (hooks are callables,
and torch itself never saves them).

Protocol 0-2 pickles written by Python 3 (torch.save uses protocol 2) spell builtins the Python 2
way (`__builtin__.long`, `__builtin__.unicode`, `copy_reg`); they are read as their Python 3 names
before the allow-list is consulted, as the standard unpickler does.

This module doubles as a `pickle_module` for `torch.load`, which needs `Unpickler` and `load`.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import pickle
import re
import struct
from typing import Any

import numpy as np
import torch
import torch._utils as tu

from xlsr.errors import CheckpointError


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allow-list (it could run code), or for more than it holds."""


def clip(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters: it quotes the file, and a refusal should stay one readable line
    (interop/fairseq.py uses it too)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Stub(dict):
    """Stands in for a class named in a checkpoint; keeps the data handed to it and runs nothing.

    A dict subclass so that dict-like classes (OrderedDict subclasses, fairseq MetersDict) can
    receive their items; list-like ones receive theirs through `append`/`extend`.
    """

    qualname = "?"

    def __init__(self, *args, **kwargs):  # called by REDUCE: cls(*args)
        self.__dict__["_args"] = args
        self.__dict__["_kwargs"] = kwargs

    def __setstate__(self, state):  # called by BUILD
        self.__dict__["_state"] = state

    def append(self, item):
        self.__dict__.setdefault("_items", []).append(item)

    def extend(self, items):
        self.__dict__.setdefault("_items", []).extend(items)

    def __reduce__(self):  # never re-pickled as the real class
        return (dict, (dict(self),))

    def __repr__(self) -> str:
        return f"<stub {self.qualname}>"


def brief(obj: Any) -> str:
    """`obj` quoted for a message without calling its repr on unknown data (a nested list shared ten times at each of
    nine levels has a repr of 10**9 items): numbers, short strings and classes as repr shows them, else its type."""
    if obj is None or isinstance(obj, (bool, int, float, torch.dtype)):
        return repr(obj)
    if isinstance(obj, (str, bytes)):
        return repr(obj[:80])
    if isinstance(obj, type):
        return f"<class {clip(getattr(obj, 'qualname', None) or f'{obj.__module__}.{obj.__qualname__}')}>"
    return f"a {type(obj).__name__}"


_stub_classes: dict[str, type] = {}


def _stub_class(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    if qualname not in _stub_classes:
        _stub_classes[qualname] = type(name, (Stub,), {"qualname": qualname, "__module__": __name__})
    return _stub_classes[qualname]


# Module prefixes whose classes are replaced by inert stubs (config and bookkeeping objects).
_STUBBED_MODULES = ("omegaconf", "hydra", "fairseq", "typing", "pathlib", "enum")
_STUBBED_GLOBALS = {("argparse", "Namespace")}

_SAFE_BUILTINS = {
    "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
    "int", "float", "bool", "complex", "slice", "object", "NoneType", "range",
}  # fmt: skip


def _defaultdict(*args):
    # A defaultdict's factory is a callable; drop it rather than trust it.
    return collections.OrderedDict()


def _reconstructor(cls, base, state):
    """Safe copyreg._reconstructor: only stubs and plain containers are instantiated."""
    if isinstance(cls, type) and issubclass(cls, Stub):
        obj = cls.__new__(cls)
        if state is not None:
            obj.__setstate__(state)
        return obj
    if cls in (dict, list, tuple, set, object, collections.OrderedDict) and base in (object, cls):
        return cls() if state is None else cls(state)
    raise UnsafePickleError(f"refused to rebuild {brief(cls)} from a pickle")


def _newobj(cls, *args):
    """Safe copyreg.__newobj__."""
    if isinstance(cls, type) and (issubclass(cls, Stub) or cls in (dict, list, set, object)):
        return cls.__new__(cls, *args)
    raise UnsafePickleError(f"refused to create {brief(cls)} from a pickle")


def _newobj_ex(cls, args, kwargs):
    return _newobj(cls, *args)


def _codecs_encode(text, encoding="utf-8"):
    """How protocol-2 pickles spell bytes (numpy arrays): str -> bytes, nothing else."""
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise UnsafePickleError("refused _codecs.encode on non-text data in a pickle")
    return text.encode(encoding)


def _type_of(*args):
    """Safe builtins.type, one-argument form: protocol <= 3 spells NoneType as type(None)."""
    if len(args) == 1 and (args[0] is None or args[0] is Ellipsis or args[0] is NotImplemented):
        return type(args[0])
    raise UnsafePickleError("refused builtins.type on anything but None, ... or NotImplemented in a pickle")


def _operator_getitem(obj, key):
    # Used by pickles of typing generics such as Optional[int] (omegaconf metadata): keep it inert.
    return _stub_class("typing", "Generic")()


def _rebuild_from_type_v2(func, new_type, args, state):
    """Safe torch._tensor._rebuild_from_type_v2: plain tensors and Parameters only."""
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafePickleError(f"refused tensor subclass {brief(new_type)} in a pickle")
    ret = func(*args)
    if new_type is torch.nn.Parameter and not isinstance(ret, torch.nn.Parameter):
        ret = torch.nn.Parameter(ret, requires_grad=ret.requires_grad)
    return ret


# torch.save writes an empty OrderedDict where these functions take backward hooks ("Don't serialize hooks"), and a
# parameter's Python attributes as `state`. A file could put callables in the one and set any attribute through the
# other; both are dropped.
def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    return tu._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, collections.OrderedDict(),
                                 metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    return tu._rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, collections.OrderedDict(),
                                 dtype, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return tu._rebuild_parameter(data, requires_grad, collections.OrderedDict())


def _torch_globals() -> dict[tuple[str, str], Any]:
    allowed = {
        ("torch._utils", "_rebuild_tensor"): tu._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    allowed[("torch._tensor", "_rebuild_from_type_v2")] = _rebuild_from_type_v2
    allowed[("torch._utils", "_rebuild_device_tensor_from_numpy")] = _rebuild_from_numpy
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch", "device")] = torch.device
    allowed[("torch.nn.parameter", "Parameter")] = torch.nn.Parameter
    for dtype_name in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
                       "uint8", "bool", "complex64", "complex128"):  # fmt: skip
        allowed[("torch", dtype_name)] = getattr(torch, dtype_name)
    return allowed


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # numpy.dtype and numpy.ndarray resolve to recorders: numpy's own __setstate__ would accept a dtype
    # state that declares an object field while claiming to hold none, and the file's bytes would
    # then be read as object addresses. The recorders keep what the pickle says; `to_plain` builds
    # arrays of plain numeric dtypes from it and refuses everything else.
    allowed: dict[tuple[str, str], Any] = {("numpy", "dtype"): NumpyDtype, ("numpy", "ndarray"): NumpyArray}
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(core, "scalar")] = _numpy_scalar
        allowed[(core, "_reconstruct")] = _numpy_reconstruct
    for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool_"):
        allowed[("numpy", name)] = getattr(np, name)
    return allowed


_PLAIN_DTYPE_SPEC = re.compile(r"[biufc]\d{1,2}")  # how numpy pickles builtin numeric dtypes: 'f8', 'i4', 'b1'
_MAX_DIMS = 64  # numpy 2's limit (numpy 1's is 32: its reshape refuses 33 to 64)


class NumpyDtype:
    """A numpy dtype as a pickle describes it (REDUCE args, then BUILD state); nothing is built yet."""

    def __init__(self, spec=None, align=False, copy=False):
        self.spec, self.state = spec, None

    def __setstate__(self, state):
        self.state = state

    def materialize(self) -> np.dtype:
        """The described dtype if it is a plain number type (bool, int, uint, float, complex); else refuse."""
        if not isinstance(self.spec, str) or not _PLAIN_DTYPE_SPEC.fullmatch(self.spec):
            raise UnsafePickleError(f"refused numpy dtype {brief(self.spec)} in a pickle (plain numbers only)")
        try:
            dtype = np.dtype(self.spec)
        except TypeError:  # e.g. 'f3': the pattern admits sizes numpy has no type for
            raise UnsafePickleError(f"refused numpy dtype {clip(repr(self.spec))} in a pickle (numpy has no such "
                                    f"type)") from None
        state = self.state
        if state is not None:
            if not isinstance(state, tuple) or len(state) not in (8, 9) or any(v is not None for v in state[2:5]):
                raise UnsafePickleError(f"refused numpy dtype {clip(repr(self.spec))} with a structured state in a "
                                        f"pickle")
            if state[1] == ">":
                dtype = dtype.newbyteorder(">")
            elif state[1] not in ("<", "|", "="):
                raise UnsafePickleError(f"refused numpy dtype {brief(self.spec)} with byte order "
                                        f"{brief(state[1])}")
        return dtype


class NumpyArray:
    """A numpy array as a pickle describes it; `materialize` copies its bytes into a new numeric array."""

    def __init__(self, *args):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def materialize(self) -> np.ndarray:
        state = self.state
        if isinstance(state, tuple) and len(state) == 4:
            state = (1, *state)  # written without a version number
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickleError("refused a numpy array without its data in a pickle")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, NumpyDtype):
            raise UnsafePickleError("refused a numpy array without a dtype in a pickle")
        dtype = dtype.materialize()
        if (not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape)
                or not isinstance(raw, (bytes, bytearray))):  # fmt: skip
            raise UnsafePickleError("refused a numpy array with a malformed shape or data in a pickle")
        if len(shape) > _MAX_DIMS:
            raise UnsafePickleError(f"refused a numpy array of {len(shape)} dimensions in a pickle (numpy allows at "
                                    f"most {_MAX_DIMS})")
        # Python ints, so a huge shape cannot wrap around to match the bytes; multiplied stepwise and stopped once
        # past the data, so a damaged one (dimensions of 2**64 each) costs no product of thousands of digits
        count = 0 if 0 in shape else 1
        for n in shape:
            if count > len(raw):
                break
            count *= n
        if len(raw) != count * dtype.itemsize:
            raise UnsafePickleError(f"refused a numpy array of {len(shape)} dimensions in a pickle: its shape does not "
                                    f"match its {len(raw)} bytes of data")
        return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, NumpyDtype) or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("refused a numpy scalar without a dtype and its bytes in a pickle")
    dtype = dtype.materialize()
    if len(data) != dtype.itemsize:
        raise UnsafePickleError(f"refused a numpy {dtype} scalar of {len(data)} bytes in a pickle")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _numpy_reconstruct(cls, shape, dtype_code):
    if cls is not NumpyArray:
        raise UnsafePickleError(f"refused numpy array subclass {brief(cls)} in a pickle")
    return NumpyArray()


def _rebuild_from_numpy(data, dtype, device, requires_grad):
    """Safe torch._utils._rebuild_device_tensor_from_numpy: the array is built by NumpyArray first."""
    if not isinstance(data, NumpyArray):
        raise UnsafePickleError("refused a tensor from something other than a numpy array in a pickle")
    tensor = torch.from_numpy(data.materialize()).to(dtype=dtype, device=device)
    tensor.requires_grad = requires_grad
    return tensor


def python3_name(module: str, name: str) -> tuple[str, str]:
    """The Python 3 spelling of a global that a protocol < 3 pickle names the Python 2 way.

    Python 3 writes protocol 0-2 pickles with Python 2 names (`__builtin__.long` for int,
    `__builtin__.unicode` for str, `copy_reg` for copyreg), as the standard unpickler's fix_imports
    expects; torch.save uses protocol 2. The translation only renames: the result must still be on
    the allow-list, so it widens nothing. Python 2 module names are not Python 3 ones, so applying
    it whatever the protocol is safe.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _BoundedReader:
    """The file as the unpickler sees it: a read of more bytes than are left is refused before anything is allocated."""

    def __init__(self, file):
        self._file = file
        try:
            here = file.tell()
            self._left = file.seek(0, io.SEEK_END) - here
            file.seek(here)
        except (AttributeError, OSError, ValueError):  # not seekable: reads are bounded by what arrives
            self._left = None

    def read(self, size: int) -> bytes:
        if self._left is not None and size > self._left:
            raise pickle.UnpicklingError(f"a length field asks for {size:,} bytes; only {self._left:,} remain")
        data = self._file.read(size)
        if self._left is not None:
            self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._file.readline()
        if self._left is not None:
            self._left -= len(line)
        return line


class _Opcodes(dict):
    """The unpickler's opcode table; a byte that is no opcode is an UnpicklingError, not a KeyError."""

    def __missing__(self, code: int):
        raise pickle.UnpicklingError(f"invalid opcode {bytes([code])!r}")


# What a constructor may be handed: values the pickle holds itself, so that what it builds is no bigger than them.
_LITERALS = (str, bytes, bytearray, int, float, complex, bool, type(None), list, tuple, dict, set, frozenset)
_SCALARS = (str, bytes, int, float, complex, bool, type(None))
_NUMPY_SCALAR_TYPES = tuple(getattr(np, name) for name in ("float64", "float32", "float16", "int64", "int32", "int16",
                                                           "int8", "uint8", "bool_"))


MAX_RANGE = 2**20  # a range in a config is a handful of numbers; whoever reads one may iterate it


def _check_call(func, args: tuple) -> None:
    """Refuse a call (REDUCE, NEWOBJ, OBJ, INST) of an allowed class that would build far more than the pickle holds:
    `bytes`/`bytearray` of a count, `str` of a container (its repr may be exponential in the pickle's size), a numpy
    scalar type of a (nested) list, which numpy turns into an array, a container built from a range or a tensor (a
    stride-0 view of 4 bytes can have 10**12 elements), or a range of more than MAX_RANGE numbers."""
    if not isinstance(func, type):
        return
    if func is range:
        try:
            ok = len(range(*args)) <= MAX_RANGE
        except OverflowError:  # longer than sys.maxsize
            ok = False
    elif func is str:
        ok = all(isinstance(a, _SCALARS) for a in args)
    elif func in (bytes, bytearray):
        ok = not args or (isinstance(args[0], (str, bytes, bytearray, list, tuple)) and
                          all(isinstance(a, str) for a in args[1:]))  # fmt: skip
    elif issubclass(func, _NUMPY_SCALAR_TYPES):
        ok = all(isinstance(a, _SCALARS) for a in args)
    elif func in (list, tuple, set, frozenset, dict, collections.OrderedDict, torch.Size):
        ok = all(isinstance(a, _LITERALS) or isinstance(a, Stub) for a in args)
    else:
        return
    if not ok:
        described = ", ".join(brief(a) for a in args[:3])
        raise UnsafePickleError(f"refused to build {func.__name__} from {described or 'nothing'} in a pickle (it "
                                f"could take far more memory than the file holds)")


class Unpickler(pickle._Unpickler):
    """Python's unpickler resolving only allow-listed globals (see the module docstring)."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, file, **kwargs):
        super().__init__(_BoundedReader(file), **kwargs)

    def _load_bytearray8(self):
        # Python's version allocates the bytearray before reading; read (bounded) first.
        (size,) = struct.unpack("<Q", self.read(8))
        self.append(bytearray(self.read(size)))

    # The opcodes that call a class or function the pickle named, each with `_check_call` first.
    def _load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        _check_call(func, args)
        self.stack[-1] = func(*args)

    def _load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        _check_call(cls, args)
        self.append(cls.__new__(cls, *args))

    def _load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        _check_call(cls, args)
        _check_call(cls, tuple(kwargs.values()) if isinstance(kwargs, dict) else (kwargs,))
        self.append(cls.__new__(cls, *args, **kwargs))

    def _instantiate(self, klass, args):  # INST and OBJ
        _check_call(klass, tuple(args))
        super()._instantiate(klass, args)

    def _load_build(self):
        # Tensor.__setstate__ would take backward hooks (callables) or re-point the tensor at other memory.
        if isinstance(self.stack[-2], torch.Tensor):
            raise UnsafePickleError("refused to set the state of a tensor from a pickle")
        super().load_build()

    dispatch = _Opcodes(pickle._Unpickler.dispatch)
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build

    @classmethod
    def allowed_globals(cls) -> dict[tuple[str, str], Any]:
        """The (module, name) → object table this unpickler resolves."""
        if cls._allowed is None:
            table: dict[tuple[str, str], Any] = {
                ("collections", "OrderedDict"): collections.OrderedDict,
                ("collections", "defaultdict"): _defaultdict,
                ("copyreg", "_reconstructor"): _reconstructor,
                ("copyreg", "__newobj__"): _newobj,
                ("copyreg", "__newobj_ex__"): _newobj_ex,
                ("operator", "getitem"): _operator_getitem,
                ("_codecs", "encode"): _codecs_encode,
                ("builtins", "NoneType"): type(None),
                ("builtins", "type"): _type_of,
            }
            for name in _SAFE_BUILTINS - {"NoneType"}:
                table[("builtins", name)] = getattr(builtins, name)
            table.update(_torch_globals())
            table.update(_numpy_globals())
            cls._allowed = table
        return cls._allowed

    def find_class(self, module: str, name: str):
        spelled = f"{module}.{name}"
        module, name = python3_name(module, name)
        allowed = self.allowed_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        if (module, name) in _STUBBED_GLOBALS or module.split(".")[0] in _STUBBED_MODULES:
            return _stub_class(module, name)
        raise UnsafePickleError(
            f"refused to load {clip(spelled)}: checkpoints may only hold tensors and plain config data"
        )


def load(file, **kwargs):
    """Unpickle one object from an open binary file with the restricted unpickler."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs):
    """Unpickle one object from bytes with the restricted unpickler."""
    return load(io.BytesIO(data), **kwargs)


# omegaconf stores a container's children in `_content` and a leaf's value in `_val`.
def to_plain(obj: Any, _seen: set[int] | None = None, _done: dict[int, Any] | None = None) -> Any:
    """Turn stubs (Namespace, DictConfig, ListConfig, nodes, ...) into plain dicts/lists/values.

    An object the data holds in several places is converted once and the result shared, as the pickle shared it:
    converting each use anew would take 10**9 steps for nine levels of lists that each hold one list ten times.
    """
    seen = _seen if _seen is not None else set()
    done = _done if _done is not None else {}
    key = id(obj)
    if key in done:
        return done[key][1]
    if isinstance(obj, (NumpyArray, NumpyDtype)):
        result = obj.materialize()
    elif isinstance(obj, Stub):
        if key in seen:
            return None  # a back-reference such as omegaconf's `_parent`
        result = _stub_to_plain(obj, seen | {key}, done)
    elif isinstance(obj, dict):
        result = {k: to_plain(v, seen, done) for k, v in obj.items()}
    elif isinstance(obj, list):
        result = [to_plain(v, seen, done) for v in obj]
    elif isinstance(obj, tuple):
        result = tuple(to_plain(v, seen, done) for v in obj)
    else:
        return obj
    done[key] = (obj, result)  # `obj` kept alive with it, so that its id is not reused for another object
    return result


def _stub_to_plain(obj: Stub, seen: set[int], done: dict[int, Any]) -> Any:
    state = obj.__dict__.get("_state")
    pair = isinstance(state, tuple) and len(state) == 2
    if pair and isinstance(state[0], (dict, type(None))) and isinstance(state[1], dict):
        state = {**(state[0] or {}), **state[1]}  # (dict_state, slot_state) as BUILD takes it; not any pair
    if isinstance(state, dict) and "_content" in state:
        return to_plain(state["_content"], seen, done)
    if isinstance(state, dict) and "_val" in state:
        return to_plain(state["_val"], seen, done)
    if dict(obj):
        return {k: to_plain(v, seen, done) for k, v in dict.items(obj)}
    if "_items" in obj.__dict__:
        return [to_plain(v, seen, done) for v in obj.__dict__["_items"]]
    if isinstance(state, dict):
        return {k: to_plain(v, seen, done) for k, v in state.items() if not str(k).startswith("_")}
    args = obj.__dict__.get("_args") or ()
    if len(args) == 1:
        return to_plain(args[0], seen, done)  # e.g. an enum member rebuilt from its value
    return None


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w]*(?:\.[\w]+)*)\}")


# A fairseq config has a few hundred values; one with more, counting a shared part once per use, is damaged.
MAX_CONFIG_VALUES = 1_000_000


def resolve_interpolations(tree: Any, _ancestors: tuple = (), _count: list[int] | None = None) -> Any:
    """Replace omegaconf references ("${task.normalize}") in plain config data by the values they name.

    A DictConfig pickled as such keeps its references unresolved. Each is looked up from the nearest
    enclosing dict that has its first key, so a fine-tuned file's nested pretraining config (w2v_args)
    resolves against itself first. Only whole-string references to other keys are resolved; anything
    else (resolvers such as ${env:...}, or a key that is not there) stays the string it was. A tree of more
    than MAX_CONFIG_VALUES values, a shared part counted at each use, is refused (UnsafePickleError).
    """
    count = _count if _count is not None else [0]
    count[0] += 1
    if count[0] > MAX_CONFIG_VALUES:
        raise UnsafePickleError(f"refused a config of more than {MAX_CONFIG_VALUES:,} values (counting each use of "
                                f"a shared part); a fairseq config has a few hundred")
    if isinstance(tree, dict):
        scope = (tree, *_ancestors)
        return {k: resolve_interpolations(v, scope, count) for k, v in tree.items()}
    if isinstance(tree, list):
        return [resolve_interpolations(v, _ancestors, count) for v in tree]
    if isinstance(tree, str):
        return _lookup_reference(tree, _ancestors, depth=0)
    return tree


def _lookup_reference(value: str, scopes: tuple, depth: int) -> Any:
    match = _INTERPOLATION.fullmatch(value)
    if match is None or depth > 8:  # a chain this long is a cycle
        return value
    path = match[1].split(".")
    for scope in scopes:
        if path[0] not in scope:
            continue
        node: Any = scope
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return value
            node = node[key]
        return _lookup_reference(node, scopes, depth + 1) if isinstance(node, str) else node
    return value
