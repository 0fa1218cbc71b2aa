"""How many threads a run's torch uses: the CPUs this process may really run on, how many of them other work
keeps busy, and the user's own settings, which always win.

PyTorch sizes its intra-op pool from the machine (its cores; with its OpenMP build, the process's affinity), never
from a container's CPU quota: a container limited to 2 CPUs on a 64-core host starts 64 threads. And two threads on
two cores, one of them busy with another process, ran a ~1 ms step about 3 times slower here than one thread did (14
times with more going on: benchmarks/contention.py). So the host (runs.host) decides once, before training, and the
count stays fixed for the run: it changes the order floats are summed in, so a resume reuses the count its
checkpoint recorded.

Who decides, first match wins (`ThreadChoice.set_by`):
1. "preset": the preset's `threads:` (a number; "auto" or absent leaves it to what follows);
2. "OMP_NUM_THREADS": set in the environment (torch read it at import; it is left alone). Under torchrun with
   more than one local rank, OMP_NUM_THREADS=1 is what torchrun sets when nothing is, so that one is not taken
   as the user's (`threads: 1` pins one thread a rank there);
3. "torch.set_num_threads": the user's own code set torch's count before the run. What is detected: torch's
   count is none of the counts torch starts with on this machine (its physical cores, its logical CPUs, the
   CPUs of this process's affinity, the least of those) and not the count this module last set. A call that
   happens to set one of those counts cannot be told from torch's own default;
4. "checkpoint": the count the checkpoint being resumed recorded;
5. "auto": the CPUs this process may use (`CpuShare`), less those other processes keep busy, divided among
   torchrun's local ranks; a run in the app's own thread leaves one more to the UI; at least one.

How busy the CPUs are is measured, not guessed from the load average (a minute-long average that still counts
a job that ended and not one that just began): the CPU time each of this process's CPUs spent busy while the
host checked the run (`BusySample`: a few seconds where that imports torch, MIN_SAMPLE_S where torch was imported
already), less this process's own (and its sibling ranks'), as psutil reads them. A CPU counts as busy when other
processes used more than half of it.

DataLoader workers run one torch thread each: torch sets that in every worker it starts, and it is kept. The idle
threads' spin-wait is left as torch's OpenMP runtime has it: OMP_WAIT_POLICY=PASSIVE helped two threads beside a
busy CPU (1.5-2.7x), but cost two threads on quiet CPUs more (the ~1 ms step 2.4x slower here), and once sized, a
run leaves the busy CPUs no thread of its own to spin on: there it changed nothing (0.93-1.04x;
benchmarks/contention.py --variants). A count fixed for the run cannot follow work that starts on its CPUs later.
Every reader here is robust to missing or malformed files (a container, macOS): none of them raises."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
MIN_SAMPLE_S = 0.1
"""The shortest sample of the CPUs' use: /proc/stat counts in hundredths of a second."""
BUSY_SHARE = 0.5
"""Other processes' use of a CPU above which it counts as busy."""
LOADER_WORKER_THREADS = 1
"""torch's own choice in each DataLoader worker process (torch.utils.data's worker loop sets it)."""
_V1_CPU_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
_SET_BY_US: int | None = None
"""The intra-op count apply_threads last set in this process (a later run there must not take it for a
user's own)."""


# ---------------------------------------------------------------- the CPUs this process may use


def affinity_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on (None where the system cannot say: macOS, Windows)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _read_small(path: Path, limit: int = 4096) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read(limit)
    except (OSError, ValueError):
        return None


def _cgroup_paths(proc: Path) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and its v1 cpu controller's path, from /proc/self/cgroup."""
    text = _read_small(proc / "self" / "cgroup", limit=65536) or ""
    v2 = v1 = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, separator, path = rest.partition(":")
        if not separator or not path.startswith("/"):
            continue
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _folders_up(base: Path, path: str) -> list[Path]:
    """path's folder under base and every one above it, those that exist. In a container whose cgroup is
    mounted as its root (no cgroup namespace), /proc names a path the mount does not have: the root remains."""
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    folders = [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [folder for folder in folders if folder.is_dir()]


def _quota_v2(text: str | None) -> float | None:
    """cpu.max, "QUOTA PERIOD" in microseconds ("max" for none): the CPUs' worth it allows."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _ratio(parts[0], parts[1])


def _quota_v1(quota: str | None, period: str | None) -> float | None:
    """cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us."""
    if quota is None or period is None:
        return None
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        allowed, length = int(quota), int(period)
    except ValueError:
        return None
    return allowed / length if allowed > 0 and length > 0 else None


def cgroup_cpu_limit(proc: Path = PROC, cgroup: Path = CGROUP) -> float | None:
    """The CPUs' worth of time a cgroup CPU quota lets this process use (the tightest of its cgroup's and
    those above it, v2 `cpu.max` or v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`); None: no quota, or none
    that can be read."""
    v2, v1 = _cgroup_paths(proc)
    limits: list[float] = []
    if v2 is not None:
        for folder in _folders_up(cgroup, v2):
            limit = _quota_v2(_read_small(folder / "cpu.max"))
            if limit is not None:
                limits.append(limit)
    if v1 is not None:
        for name in _V1_CPU_FOLDERS:
            for folder in _folders_up(cgroup / name, v1):
                limit = _quota_v1(_read_small(folder / "cpu.cfs_quota_us"), _read_small(folder / "cpu.cfs_period_us"))
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def usable_cpus(affinity: Collection[int] | None, quota: float | None, machine: int | None) -> int:
    """The whole CPUs this process may keep busy: its affinity's CPUs (else the machine's), no more than a
    quota allows (1.5 CPUs' worth is one CPU: a second thread would be throttled), at least one."""
    cpus = len(affinity) if affinity else (machine or 1)
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)


# ---------------------------------------------------------------- what else keeps them busy


def cpu_busy_seconds() -> list[float]:
    """Seconds each CPU has spent busy since boot, by CPU number (psutil; empty where it cannot say)."""
    try:
        import psutil

        times = psutil.cpu_times(percpu=True)
    except Exception:
        return []
    # Busy is all but idle and waiting on the disk; guest time is counted in user time already (Linux).
    return [sum(cpu) - cpu.idle - sum(getattr(cpu, name, 0.0) for name in ("iowait", "guest", "guest_nice"))
            for cpu in times]


def own_cpu_seconds(with_sibling_ranks: bool = False) -> dict[int, float]:
    """CPU seconds used so far by this process (and, under torchrun, by its sibling ranks: the other children
    of the process that started it), by process id."""
    try:
        import psutil

        processes = [psutil.Process()]
        if with_sibling_ranks:
            parent = processes[0].parent()
            if parent is not None:
                processes += [child for child in parent.children() if child.pid != processes[0].pid]
    except Exception:
        return {}
    used: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except Exception:
            continue
        used[process.pid] = times.user + times.system
    return used


class BusySample:
    """Other processes' use of this process's CPUs from now until `others()` is called."""

    def __init__(self, cpus: Collection[int] | None, *, with_sibling_ranks: bool = False,
                 busy_seconds: Callable[[], list[float]] = cpu_busy_seconds,
                 own_seconds: Callable[[bool], dict[int, float]] = own_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cpus = cpus
        self.with_sibling_ranks = with_sibling_ranks
        self._busy_seconds, self._own_seconds, self._clock, self._sleep = busy_seconds, own_seconds, clock, sleep
        self._started = clock()
        self._busy = self._on_our_cpus(busy_seconds())
        self._own = own_seconds(with_sibling_ranks)

    def _on_our_cpus(self, per_cpu: list[float]) -> float:
        if self.cpus is None:
            return sum(per_cpu)
        return sum(seconds for cpu, seconds in enumerate(per_cpu) if cpu in self.cpus)

    def others(self, min_window_s: float = MIN_SAMPLE_S) -> float:
        """CPUs' worth of other processes' work on this process's CPUs over the sample (0.0 when unknown)."""
        waited = self._clock() - self._started
        if waited < min_window_s:
            self._sleep(min_window_s - waited)
        window = self._clock() - self._started
        busy = self._on_our_cpus(self._busy_seconds()) - self._busy
        now = self._own_seconds(self.with_sibling_ranks)
        own = sum(seconds - self._own[pid] for pid, seconds in now.items() if pid in self._own)
        if window <= 0 or busy <= 0:
            return 0.0
        return max(0.0, (busy - own) / window)


@dataclass(frozen=True)
class CpuShare:
    """The CPUs a run may use, and how many of them other work keeps busy."""

    cpus: int
    """CPUs this process may run on: its affinity, capped by a cgroup quota."""
    busy: int = 0
    """Of those, the ones other processes kept busy while the run set up."""

    @property
    def free(self) -> int:
        return max(0, self.cpus - self.busy)


def busy_count(others: float, cpus: int, allowed: int) -> int:
    """How many of a quota's `cpus` other work takes: `others` CPUs' worth busy among the `allowed` CPUs the
    process may run on (under a quota of 2 on a 64-core host, 10 busy CPUs leave the quota whole)."""
    busy = max(0, math.ceil(others - BUSY_SHARE))
    return min(cpus, max(0, busy - max(0, allowed - cpus)))


# ---------------------------------------------------------------- the choice


@dataclass(frozen=True)
class ThreadChoice:
    """How many threads a run's torch uses, and why (one JSON object in RunStarted and run.json)."""

    intra_op: int
    """torch.set_num_threads: the threads one operation is split across."""
    inter_op: int
    """torch.set_num_interop_threads: operations run side by side (torch.jit.fork); idle in eager training."""
    loader_worker: int = LOADER_WORKER_THREADS
    """torch threads in each DataLoader worker process."""
    cpus: int = 1
    """CPUs this process may use (its affinity, capped by a cgroup quota)."""
    busy: int = 0
    """Of those, the ones other work kept busy when the run started."""
    ranks: int = 1
    """Processes of the run on this machine sharing those CPUs (torchrun's local world size)."""
    set_by: str = "auto"
    """auto, preset, OMP_NUM_THREADS, torch.set_num_threads or checkpoint."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ThreadChoice | None:
        """The choice in data (a RunStarted's or a run.json's); None for a missing or malformed one."""
        if not isinstance(data, Mapping):
            return None
        names = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        try:
            choice = cls(**values)
        except TypeError:
            return None
        numbers = (choice.intra_op, choice.inter_op, choice.loader_worker, choice.cpus, choice.busy, choice.ranks)
        if not all(type(number) is int and number >= 0 for number in numbers) or not isinstance(choice.set_by, str):
            return None
        return choice

    def notes(self) -> list[str]:
        """What else is worth saying: ["1 busy"], ["2 ranks"], ["set by OMP_NUM_THREADS"]."""
        notes = [f"{self.busy} busy"] if self.busy else []
        if self.ranks > 1:
            notes.append(f"{self.ranks} ranks")
        if self.set_by != "auto":
            notes.append(f"set by {self.set_by}")
        return notes

    def describe(self) -> str:
        """e.g. "torch threads 1 of 2 CPUs (1 busy)", "torch threads 4 of 8 CPUs (2 ranks)",
        "torch threads 3 of 2 CPUs (set by OMP_NUM_THREADS)"."""
        notes = self.notes()
        return (f"torch threads {self.intra_op} of {self.cpus} CPU{'s' if self.cpus != 1 else ''}"
                + (f" ({', '.join(notes)})" if notes else ""))


def user_omp_threads(environ: Mapping[str, str], local_ranks: int = 1) -> int | None:
    """OMP_NUM_THREADS as the user set it (its first level: "4,2" is 4); None when unset or not a count, and
    for the 1 torchrun sets itself when it starts more than one local rank and nothing was set."""
    text = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        count = int(text)
    except ValueError:
        return None
    if count < 1 or (count == 1 and local_ranks > 1):
        return None
    return count


def torch_default_counts(affinity: Collection[int] | None, machine: int | None, physical: int | None) -> set[int]:
    """The intra-op counts torch may start with here, whichever its build (see the module's docstring)."""
    counts = {count for count in (machine, physical, len(affinity) if affinity else None) if count}
    if counts:
        counts.add(min(counts))
    return counts


def choose_threads(share: CpuShare, *, preset: int | None = None, environ: Mapping[str, str] | None = None,
                   current: int | None = None, defaults: Collection[int] = (), recorded: int | None = None,
                   ranks: int = 1, leave_one: bool = False) -> ThreadChoice:
    """The run's thread counts. share: its CPUs; preset: the preset's `threads`; environ: the process's
    environment; current: torch's count now; defaults: the counts torch starts with here
    (torch_default_counts); recorded: the resumed checkpoint's count; ranks: torchrun's local world size;
    leave_one: a run in the app's own thread (one CPU stays the UI's)."""
    environ = os.environ if environ is None else environ
    ranks = max(1, ranks)
    figures = {"cpus": share.cpus, "busy": share.busy, "ranks": ranks}
    from_environment = user_omp_threads(environ, ranks)
    if preset is not None:
        return ThreadChoice(preset, preset, set_by="preset", **figures)
    if from_environment is not None:
        # torch read it already; what torch made of it is what the run uses.
        count = current or from_environment
        return ThreadChoice(count, count, set_by="OMP_NUM_THREADS", **figures)
    if current is not None and current not in defaults and current != _SET_BY_US:
        return ThreadChoice(current, current, set_by="torch.set_num_threads", **figures)
    if recorded is not None:
        return ThreadChoice(recorded, recorded, set_by="checkpoint", **figures)
    count = share.free // ranks - (1 if leave_one else 0)
    count = max(1, count)
    return ThreadChoice(count, count, **figures)


def local_ranks(environ: Mapping[str, str], world_size: int) -> int:
    """Processes of the run on this machine: torchrun's LOCAL_WORLD_SIZE, else the whole world."""
    try:
        count = int(environ.get("LOCAL_WORLD_SIZE", ""))
    except ValueError:
        count = world_size
    return max(1, min(count, world_size)) if world_size > 1 else 1


def physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:
        return None


def measure_share(sample: BusySample | None, *, affinity: Collection[int] | None = None,
                  proc: Path = PROC, cgroup: Path = CGROUP, machine: int | None = None) -> CpuShare:
    """This process's CPUs now, with the busy ones sample saw (None: not measured)."""
    machine = machine or os.cpu_count()
    quota = cgroup_cpu_limit(proc, cgroup)
    cpus = usable_cpus(affinity, quota, machine)
    if sample is None:
        return CpuShare(cpus)
    allowed = len(affinity) if affinity else (machine or cpus)
    return CpuShare(cpus, busy_count(sample.others(), cpus, allowed))


# ---------------------------------------------------------------- applying it


def apply_threads(choice: ThreadChoice) -> ThreadChoice:
    """Set torch's counts to choice (a user's own setting is left as it is); returns choice with the counts
    torch has now. torch takes the inter-op count once a process, before any inter-op work: a later run in
    the same process (the app's thread) keeps the first."""
    global _SET_BY_US
    import torch

    if choice.set_by not in ("OMP_NUM_THREADS", "torch.set_num_threads"):
        if torch.get_num_threads() != choice.intra_op:
            torch.set_num_threads(choice.intra_op)
        _SET_BY_US = choice.intra_op
        if torch.get_num_interop_threads() != choice.inter_op:
            with contextlib.suppress(RuntimeError):
                torch.set_num_interop_threads(choice.inter_op)
    return replace(choice, intra_op=torch.get_num_threads(), inter_op=torch.get_num_interop_threads())


def size_threads(sample: BusySample | None, *, preset: int | None, recorded: int | None, world_size: int = 1,
                 leave_one: bool = False) -> ThreadChoice:
    """Decide this run's thread counts (choose_threads, from this process's CPUs and environment) and set
    torch's to them."""
    import torch

    affinity = affinity_cpus()
    machine = os.cpu_count()
    choice = choose_threads(
        measure_share(sample, affinity=affinity, machine=machine), preset=preset, environ=os.environ,
        current=torch.get_num_threads(), defaults=torch_default_counts(affinity, machine, physical_cores()),
        recorded=recorded, ranks=local_ranks(os.environ, world_size), leave_one=leave_one)
    return apply_threads(choice)
