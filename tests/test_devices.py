"""Device choice: --device auto|cpu|cuda|cuda:N, one line for a device this machine lacks."""

import pytest
import torch

from xlsr.devices import pick_device
from xlsr.errors import XlsrError


def test_device_this_machine_lacks_is_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(XlsrError, match=r"device: 'cuda' asked for, but .* sees no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(XlsrError, match=r"device: 'gpu0' is not a device"):
        pick_device("gpu0")
    assert pick_device("auto").type == "cpu"


@pytest.mark.parametrize("name", ["meta", "mps", "xpu", "meta:0"])
def test_device_types_other_than_cpu_or_cuda_are_refused(name):
    # torch.device accepts these, but the runs here support cpu and cuda only: refuse before any work
    with pytest.raises(XlsrError, match=rf"device: '{name}' is not a device \(cpu, cuda, cuda:N or auto\)"):
        pick_device(name)


def test_cpu_device_still_accepted():
    assert pick_device("cpu") == torch.device("cpu")
