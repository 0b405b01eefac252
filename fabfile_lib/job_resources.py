"""What a lab's job was given -- CPUs, memory, GPUs and their type -- from Slurm's record of the job
(``scontrol show job -d -o``), read once as the job starts, so that ``status`` says a GPU lab is one.

What scontrol prints is cluster data: only counts, sizes and type names of plain characters are taken.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

_MEM = re.compile(r"[0-9]+(?:\.[0-9]+)?[KMGTP]?")
_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
# gpu:2, gpu:a100:2, gpu:a100:2(IDX:0-1), gpu:a100:2(S:0-1): in JOB_GRES, TresPerNode or TresPerJob
_GRES = re.compile(r"(?:gres[:/])?gpu(?::([A-Za-z0-9_.-]{1,40}))?[:=]([0-9]{1,4})(?:\([^)]*\))?")


@dataclass(frozen=True)
class Resources:
    cpus: int = 0
    mem: str = ""  # as Slurm writes it (1G, 500M); "" where it does not say
    gpus: int = 0
    gpu_types: tuple[str, ...] = ()

    def describe(self) -> str:
        """``4 CPUs, 16G, 1 GPU (a100)``; "" when nothing is known."""
        parts = [f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}"] if self.cpus else []
        if self.mem:
            parts.append(self.mem)
        if self.gpus:
            kinds = f" ({', '.join(self.gpu_types)})" if self.gpu_types else ""
            parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}{kinds}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "gpu_types": list(self.gpu_types)}

    @classmethod
    def from_dict(cls, data: object) -> Resources:
        """From a record (written by the tool); anything that is not of the shape is left out."""
        if not isinstance(data, dict):
            return cls()
        cpus, gpus, mem = data.get("cpus"), data.get("gpus"), data.get("mem")
        types = data.get("gpu_types")
        kinds = tuple(t for t in types if isinstance(t, str) and _TYPE.fullmatch(t)) if isinstance(types, list) else ()
        return cls(cpus if isinstance(cpus, int) else 0, mem if isinstance(mem, str) and _MEM.fullmatch(mem) else "",
                   gpus if isinstance(gpus, int) else 0, kinds)


def parse(line: str) -> Resources:
    """The resources in one ``scontrol show job -d -o`` line (nothing known: all zero)."""
    fields = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    cpus = int(fields["NumCPUs"]) if fields.get("NumCPUs", "").isdigit() else 0
    tres = dict(item.partition("=")[::2] for item in fields.get("TRES", "").split(",") if "=" in item)
    mem = tres.get("mem", "")
    gpus, types = 0, []
    for key in ("JOB_GRES", "TresPerNode", "TresPerJob"):
        found = [m for m in (_GRES.fullmatch(item) for item in _gres_items(fields.get(key, ""))) if m]
        if found:
            gpus = sum(int(m.group(2)) for m in found)
            types = sorted({m.group(1) for m in found if m.group(1)})
            break
    if not gpus and tres.get("gres/gpu", "").isdigit():
        gpus = int(tres["gres/gpu"])
    return Resources(cpus, mem if _MEM.fullmatch(mem) else "", gpus, tuple(types))


def _gres_items(text: str) -> list[str]:
    """``gpu:a100:1(IDX:0),gpu:v100:1(IDX:1)`` split at the commas that are not inside parentheses."""
    return [item for item in re.split(r",(?![^(]*\))", text) if item and item != "(null)"]
