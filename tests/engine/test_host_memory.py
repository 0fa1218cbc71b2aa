"""Training on the CPU keeps freed tensor memory for the next step instead of page-faulting it back in.

Each check runs in a fresh interpreter: malloc's settings are the process's, and this one has trained."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from tui_trainer.engine import host_memory

STEPS = 40
TRAIN_AND_COUNT_FAULTS = textwrap.dedent(f"""
    import resource, sys, torch
    from tui_trainer.engine.host_memory import keep_freed_memory
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    optimizer = torch.optim.Adam(model.parameters())
    inputs, targets = torch.randn(128, 256), torch.randint(0, 10, (128,))
    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range({STEPS}):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", TRAIN_AND_COUNT_FAULTS, mode], capture_output=True, text=True,
                          timeout=120, check=True, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_steps_on_the_cpu_reuse_freed_memory_instead_of_faulting_in_fresh_pages():
    untuned, tuned = page_faults("default"), page_faults("tuned")
    # Untuned: megabytes of gradients and activations come back from the kernel about every step
    # (about 2,000 faults a step here); tuned: next to none.
    assert untuned > 100 * STEPS
    assert tuned < untuned / 5


def test_a_users_own_malloc_settings_are_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert host_memory.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert host_memory.keep_freed_memory() is False


def test_a_cpu_run_sets_it_up(make_config, monkeypatch):
    from tui_trainer.engine.trainer import Trainer

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append("tuned") or True)
    Trainer(make_config(), lambda event: None).setup()
    assert calls == ["tuned"]
