"""Reloads of large lists: a generated list file that changes with each generation, and what
/proc says about the dnsfw process (RSS; CPU time of the process and of its children)."""

from __future__ import annotations

import os
from pathlib import Path


def write_big_list(path: Path, entries: int, generation: int = 0) -> None:
    """``entries`` names (``host7.zone7.example`` ...), plus ``gen0.example`` up to
    ``gen{generation}.example``, so each generation differs in content and in size."""
    names = [f"host{i}.zone{i % 997}.example" for i in range(entries)]
    names += [f"gen{g}.example" for g in range(generation + 1)]
    path.write_text("\n".join(names) + "\n")


def rss_kb(pid: int) -> int:
    """Resident set size of a process (``VmRSS``), in kB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of a process itself, and of its children it has waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)): utime, stime, cutime, cstime are 14-17
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + stime) / tick, (cutime + cstime) / tick
