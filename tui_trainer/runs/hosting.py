"""How a run is hosted: three choices, each named.

- where it trains: a thread of the app's process, a process of its own, or torchrun ranks (N processes);
- who ends it: the app that started it (it saves and stops when that app goes), nobody (a detached run goes on
  by itself until it ends or is stopped), or the shell (a headless run in the foreground: its signals);
- how the app reaches it: the in-process queue, or the owner-only control socket in its run folder.

Whatever the choices, a run's main process also serves that socket, so `tui-trainer runs`, `attach` and `stop`
reach every run the same way.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Where(StrEnum):
    THREAD = "thread"
    """A training thread of the app's own process (--in-thread)."""
    PROCESS = "process"
    """A process of its own: the headless command, or the engine process the app or the launcher starts."""
    TORCHRUN = "torchrun"
    """Data-parallel ranks under torchrun, one process each."""


class EndedBy(StrEnum):
    APP = "app"
    """The app that started it: when that app goes away (quits, is killed, loses its terminal), the run saves
    last.pt and stops, unless the app let go of it first."""
    NOBODY = "nobody"
    """Detached: it goes on by itself until it ends, or is stopped (`tui-trainer stop`, an attached app)."""
    SHELL = "shell"
    """A run in the foreground of a terminal: SIGINT, SIGTERM and SIGHUP save and stop it."""


class Reach(StrEnum):
    QUEUE = "queue"
    """Events and commands pass in memory (the app's own thread)."""
    SOCKET = "socket"
    """Through the control socket in the run folder."""


@dataclass(frozen=True)
class Hosting:
    where: Where
    ended_by: EndedBy
    reach: Reach
    processes: int = 1
    """Processes that train the run (more than one: torchrun ranks)."""
    owner_pid: int | None = None
    """The owning app's process, watched by an engine process it started (the app may die before it connects)."""

    def __post_init__(self) -> None:
        if self.where == Where.THREAD and (self.reach != Reach.QUEUE or self.ended_by != EndedBy.APP):
            raise ValueError("a run in the app's thread is reached through its queue and ends with the app")
        if self.where != Where.THREAD and self.reach == Reach.QUEUE:
            raise ValueError("a run in another process is reached through its socket")
        if (self.processes > 1) != (self.where == Where.TORCHRUN):
            raise ValueError(f"{self.processes} processes with where={self.where}")

    # ------------------------------------------------------------ the hostings there are

    @classmethod
    def in_thread(cls) -> Hosting:
        return cls(Where.THREAD, EndedBy.APP, Reach.QUEUE)

    @classmethod
    def engine_of_app(cls, owner_pid: int | None = None) -> Hosting:
        """The app's default: an engine process of the run's own that ends with the app."""
        return cls(Where.PROCESS, EndedBy.APP, Reach.SOCKET, owner_pid=owner_pid or os.getpid())

    @classmethod
    def detached(cls, processes: int = 1) -> Hosting:
        return cls(Where.TORCHRUN if processes > 1 else Where.PROCESS, EndedBy.NOBODY, Reach.SOCKET, processes)

    @classmethod
    def shell(cls, processes: int = 1) -> Hosting:
        """A headless run in the foreground (each torchrun rank, when the user runs torchrun)."""
        return cls(Where.TORCHRUN if processes > 1 else Where.PROCESS, EndedBy.SHELL, Reach.SOCKET, processes)

    # ------------------------------------------------------------ what follows from them

    @property
    def owned(self) -> bool:
        """An engine process that waits for its app and stops when that app goes (see detached.server)."""
        return self.ended_by == EndedBy.APP and self.reach == Reach.SOCKET

    @property
    def detached_run(self) -> bool:
        return self.ended_by == EndedBy.NOBODY

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, StrEnum) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hosting:
        return cls(Where(data["where"]), EndedBy(data["ended_by"]), Reach(data["reach"]),
                   int(data.get("processes", 1)), data.get("owner_pid"))
