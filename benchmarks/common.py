"""What every benchmark shares: the machine it ran on (the CPU's vector extensions decide fp32 / bf16 / int8
speed, and differ between the machines this project is measured on), and the media it defaults to."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = ROOT.parent / "shared" / "media"
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def use_the_project() -> None:
    """Put the project first on the import path (a benchmark runs as a script from benchmarks/)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def cpu_description() -> dict:
    """The CPU's model name and which of the vector extensions of interest it has (a list, and each as a bool)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break  # the first processor's fields are enough
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
            "flags": {f: f in flags for f in CPU_FLAGS_OF_INTEREST}}


def machine() -> dict:
    """The CPU, cores, and the versions that decide speed."""
    import importlib.util

    import torch

    info = {**cpu_description(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}
    if importlib.util.find_spec("openvino") is not None:
        import openvino

        info["openvino"] = openvino.__version__
    return info


def machine_line(info: dict) -> str:
    """One line to print above every table."""
    return (f"CPU: {info['cpu']}, {info['cores']} cores, flags: {' '.join(info['cpu_flags']) or 'none of interest'}"
            + (f"; torch {info['torch']}" if "torch" in info else "")
            + (f", OpenVINO {info['openvino']}" if "openvino" in info else ""))


def default_media(name: str, fallback: Path) -> Path:
    path = SHARED_MEDIA / name
    return path if path.exists() else fallback
