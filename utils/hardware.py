"""Does this CPU / GPU run bfloat16 natively?  Read from the hardware, never from a model name.

bf16 autocast doubles the matrix rate of a CPU with bf16 instructions (x86 ``avx512_bf16`` or
``amx_bf16``, Arm ``bf16``) and of a CUDA GPU of compute capability 8.0 or newer (Ampere, Ada,
Hopper, ...). Everywhere else it is *emulated*: on a CPU with only AVX2, bf16 layers ran 9-21 times
and whole models 5-30 times slower than fp32 (docs/performance.md), so the choice matters both ways.

* :func:`cpu_flags` -- the instruction-set flags of ``/proc/cpuinfo`` (Linux; empty elsewhere).
* :func:`cpu_bf16` / :func:`cuda_bf16` / :func:`bf16_support` -- a :class:`Bf16Support` (``native``
  and the reason, as a phrase for logs).
* :func:`resolve_precision` -- ``--precision auto|fp32|bf16`` -> ``"fp32"`` or ``"bf16"`` with the
  line a script prints.
* :func:`autocast` -- the one ``torch.autocast`` context of the project (``--amp`` and
  ``--precision`` values; a no-op for fp32 / none).
"""
from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from typing import FrozenSet, Iterable, Optional

import torch

PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags that mean bf16 arithmetic in hardware (x86: AVX512-BF16, AMX-BF16; Arm: FEAT_BF16)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAGS = ("bf16",)


@dataclass(frozen=True)
class Bf16Support:
    """Whether a device runs bf16 natively, and why (a phrase such as ``"CPU flag avx512_bf16"``)."""

    native: bool
    reason: str


def cpu_flags(cpuinfo: Optional[str] = None) -> FrozenSet[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features`` lines of ``/proc/cpuinfo``); empty if unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def _torch_query(name: str) -> Optional[bool]:
    """A bool from one of torch's private CPU queries, or None where this torch has none."""
    try:
        if name == "mkldnn_bf16":
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(getattr(torch.cpu, name)())
    except Exception:  # noqa: BLE001 -- missing or failing private API: unknown
        return None


def cpu_bf16(flags: Optional[Iterable[str]] = None, machine: Optional[str] = None) -> Bf16Support:
    """bf16 support of this CPU, from its flags (``/proc/cpuinfo`` unless ``flags`` is given) and torch.

    Native needs a bf16 instruction-set flag (or torch's own ``avx512_bf16`` query when the flags
    cannot be read) and, where torch can tell, oneDNN's bf16 kernels in this torch build.
    """
    machine = (machine or platform.machine()).lower()
    have = frozenset(cpu_flags() if flags is None else flags)
    wanted = ARM_BF16_FLAGS if machine in ("aarch64", "arm64") else CPU_BF16_FLAGS
    found = [f for f in wanted if f in have]
    if not have and flags is None and _torch_query("_is_avx512_bf16_supported"):
        found = ["avx512_bf16 (torch.cpu)"]
    if not found:
        capability = ""
        try:
            capability = f", torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
        except Exception:  # noqa: BLE001
            pass
        what = "flags unknown" if not have else f"no {' / '.join(wanted)} flag"
        return Bf16Support(False, f"CPU without native bf16 ({what}{capability}): bf16 would be emulated")
    if flags is None and _torch_query("mkldnn_bf16") is False:
        return Bf16Support(False, f"CPU flag {', '.join(found)}, but this torch build has no oneDNN bf16 kernels")
    return Bf16Support(True, f"CPU flag {', '.join(found)}")


def cuda_bf16(device: Optional[torch.device] = None) -> Bf16Support:
    """bf16 support of a CUDA device: native from compute capability 8.0 (``torch.cuda.is_bf16_supported``)."""
    if not torch.cuda.is_available():
        return Bf16Support(False, "CUDA is not available")
    index = device.index if device is not None and device.index is not None else torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    major, minor = torch.cuda.get_device_capability(index)
    with torch.cuda.device(index):
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    return Bf16Support(native, f"CUDA {name} (compute capability {major}.{minor}"
                               + (")" if native else ", bf16 emulated below 8.0)"))


def bf16_support(device) -> Bf16Support:
    """:func:`cuda_bf16` for a CUDA device, :func:`cpu_bf16` for the CPU, not native elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return cuda_bf16(device)
    if device.type == "cpu":
        return cpu_bf16()
    return Bf16Support(False, f"device type {device.type}: bf16 support unknown")


def resolve_precision(requested: str, device) -> tuple[str, str]:
    """``auto``/``fp32``/``bf16`` on ``device`` -> (``"fp32"`` or ``"bf16"``, a line to log).

    ``auto`` is bf16 where the device runs it natively, else fp32; an explicit ``bf16`` is kept
    (with a warning in the line where it is emulated).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return "fp32", "precision fp32 (--precision fp32)"
    support = bf16_support(device)
    if requested == "bf16":
        line = "precision bf16 autocast (--precision bf16)"
        if not support.native:
            line += f"; warning: {support.reason}, expect it slower than fp32"
        return "bf16", line
    if support.native:
        return "bf16", f"precision bf16 autocast (--precision auto: {support.reason})"
    return "fp32", f"precision fp32 (--precision auto: {support.reason})"


def amp_warning(amp: str, device) -> Optional[str]:
    """The warning for training with ``--amp bf16`` where ``device`` only emulates bf16, else None."""
    if amp != "bf16":
        return None
    support = bf16_support(device)
    if support.native:
        return None
    return (f"warning: --amp bf16 on {torch.device(device)}: {support.reason}; expect training 5-30x slower than "
            "--amp none here (docs/performance.md)")


def autocast(device, precision: str):
    """The one autocast context of the project: ``"fp32"`` / ``"none"`` (``--amp none``) a null context,
    ``"bf16"`` bfloat16 autocast, ``"fp16"`` float16 autocast (CUDA only)."""
    if precision in ("fp32", "none"):
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    device = torch.device(device)
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device; use --amp bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)
