"""Which runtime runs a model on this machine (PyTorch, OpenVINO, ONNX Runtime) and at which precision."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import torch

from frcnn.core.cpu import BF16_FLAGS, cpu_flags
from frcnn.core.errors import FrcnnError
from frcnn.core.specs import BACKENDS, PRECISIONS


def check_precision(precision: str, device: torch.device, backend: str) -> None:
    """Lower precisions are OpenVINO's on the CPU (CUDA has --half); bf16 needs a CPU that computes it."""
    if precision == "fp32":
        return
    if precision not in PRECISIONS:
        raise FrcnnError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if device.type != "cpu":
        raise FrcnnError(f"--precision {precision} is for the CPU; on {device}, use --half for lower precision")
    if backend != "openvino":
        raise FrcnnError(f"--precision {precision} runs with OpenVINO (--backend openvino or auto), not {backend}")
    if precision == "bf16" and not cpu_has_bf16():
        raise FrcnnError("--precision bf16: this CPU does not compute in bf16 (it needs AVX512_BF16 or AMX); "
                          "use --precision int8 or fp32")


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) under which it has bf16 kernels; OpenVINO follows the cap
# but still reports BF16 among its capabilities, and a bf16 model then fails to compile.
_BF16_ISA_CAPS = ("BF16", "FP16", "AMX", "AVX10", "ALL", "DEFAULT")



def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run in bf16 here."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap and not any(name in cap for name in _BF16_ISA_CAPS):
        return False
    flags = cpu_flags()
    if flags is not None and not flags & set(BF16_FLAGS):  # known at once, without starting OpenVINO
        return False
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


# Fastest first, as measured by benchmarks/speed.py on a CPU.
_AUTO_CPU_ORDER = ("openvino", "onnxruntime")


_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}



def backend_installed(backend: str) -> bool:
    return backend == "torch" or importlib.util.find_spec(_PACKAGES[backend]) is not None



def choose_backend(requested: str, device: torch.device) -> str:
    """`auto`: the fastest installed runtime on the CPU, PyTorch elsewhere; otherwise check the request."""
    if requested == "auto":
        if device.type != "cpu":
            return "torch"
        return next((b for b in _AUTO_CPU_ORDER if backend_installed(b)), "torch")
    if requested not in BACKENDS:
        raise FrcnnError(f"unknown backend '{requested}' (choose from {', '.join(BACKENDS)})")
    if requested != "torch":
        if device.type != "cpu":
            raise FrcnnError(f"--backend {requested} runs on the CPU here; on {device} use --backend torch")
        if not backend_installed(requested):
            raise FrcnnError(f"--backend {requested} needs the '{_PACKAGES[requested]}' package: "
                              f"pip install {_PACKAGES[requested]}")
    return requested



def runtime_version(backend: str) -> str:
    return importlib.metadata.version(_PACKAGES[backend])
