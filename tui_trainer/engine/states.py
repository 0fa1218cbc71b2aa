"""The states a run goes through, defined once for the engine, run.json, the command line and the app.

The engine moves a run through starting, running, paused and stopping to one of finished, stopped or failed.
A run whose run.json says it is live but whose process is gone is lost (the run registry's finding, never an
event). The groups below are tuples of plain strings, so they compare with states read from events and files.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    LOST = "lost"

    @property
    def live(self) -> bool:
        return self.value in LIVE_STATES

    @property
    def ended(self) -> bool:
        return self.value in ENDED_STATES


LIVE_STATES: tuple[str, ...] = tuple(state.value for state in (RunState.STARTING, RunState.RUNNING,
                                                               RunState.PAUSED, RunState.STOPPING))
"""A process is (or should be) training the run."""
FINAL_STATES: tuple[str, ...] = tuple(state.value for state in (RunState.FINISHED, RunState.STOPPED,
                                                                RunState.FAILED))
"""The run said how it ended."""
ENDED_STATES: tuple[str, ...] = (*FINAL_STATES, RunState.LOST.value)
"""The run is over, whether it said so (final) or its process vanished (lost)."""
ENGINE_STATES: tuple[str, ...] = (*LIVE_STATES, *FINAL_STATES)
"""The states the engine itself reports (StateChanged, RunFinished)."""
RECORD_STATES: tuple[str, ...] = (*ENGINE_STATES, RunState.LOST.value)
"""The states a run.json may hold."""
