"""torch's thread counts: the CPUs a process may really use (affinity, cgroup v1/v2 quotas), the busy ones,
and the user's settings, which win. Everything the decision reads is faked here: a /proc and a cgroup folder
of the test's own, an affinity, per-CPU times, an environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tui_trainer.runs import cpu_share
from tui_trainer.runs.cpu_share import BusySample, CpuShare, ThreadChoice, choose_threads

TWO_OF_64 = frozenset({0, 1})


def fake_system(tmp_path: Path, cgroup_line: str, files: dict[str, str | bytes]) -> tuple[Path, Path]:
    """A /proc whose self/cgroup holds cgroup_line, and a cgroup mount holding files (path: content)."""
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "cgroup").write_text(cgroup_line)
    cgroup.mkdir(exist_ok=True)
    for name, content in files.items():
        path = cgroup / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return proc, cgroup


def share(tmp_path: Path, cgroup_line: str = "", files: dict[str, str | bytes] | None = None,
          affinity: frozenset[int] | None = TWO_OF_64, machine: int = 64) -> CpuShare:
    proc, cgroup = fake_system(tmp_path, cgroup_line, files or {})
    return cpu_share.measure_share(None, affinity=affinity, proc=proc, cgroup=cgroup, machine=machine)


# ---------------------------------------------------------------- the CPUs this process may use


def test_an_affinity_of_2_cpus_on_a_64_core_machine_gives_2(tmp_path):
    assert share(tmp_path).cpus == 2
    assert choose_threads(share(tmp_path)).intra_op == 2


def test_a_cgroup_v2_quota_of_2_cpus_on_a_64_core_machine_gives_2(tmp_path):
    found = share(tmp_path, "0::/user.slice/job\n", {"user.slice/job/cpu.max": "200000 100000\n"},
                  affinity=frozenset(range(64)))
    assert found.cpus == 2


def test_the_tightest_quota_of_a_cgroup_and_those_above_it_counts(tmp_path):
    files = {"outer/cpu.max": "100000 100000", "outer/inner/cpu.max": "max 100000"}
    found = share(tmp_path, "0::/outer/inner\n", files, affinity=frozenset(range(64)))
    assert found.cpus == 1


def test_a_cgroup_v2_without_a_quota_leaves_the_affinity(tmp_path):
    found = share(tmp_path, "0::/job\n", {"job/cpu.max": "max 100000\n"}, affinity=frozenset(range(8)))
    assert found.cpus == 8


def test_a_container_whose_cgroup_is_mounted_as_its_root_reads_the_root(tmp_path):
    found = share(tmp_path, "0::/docker/0123abcd\n", {"cpu.max": "300000 100000"}, affinity=frozenset(range(64)))
    assert found.cpus == 3


def test_a_cgroup_v1_quota_of_minus_1_is_no_quota(tmp_path):
    files = {"cpu,cpuacct/job/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"}
    found = share(tmp_path, "4:cpu,cpuacct:/job\n3:memory:/job\n", files, affinity=frozenset(range(16)))
    assert found.cpus == 16


def test_a_cgroup_v1_quota_of_one_and_a_half_cpus_gives_one(tmp_path):
    files = {"cpu/job/cpu.cfs_quota_us": "150000\n", "cpu/job/cpu.cfs_period_us": "100000\n"}
    found = share(tmp_path, "2:cpu:/job\n", files, affinity=frozenset(range(16)))
    assert found.cpus == 1


@pytest.mark.parametrize("content", ["", "garbage", "200000", "200000 0", "-5 100000", "max", "1e5 1e5",
                                     b"\xff\xfe\x00 100000", "200000 100000 extra"])
def test_a_malformed_cpu_max_is_no_quota(tmp_path, content):
    assert share(tmp_path, "0::/job\n", {"job/cpu.max": content}, affinity=frozenset(range(4))).cpus == 4


@pytest.mark.parametrize("cgroup_line", ["", "nonsense", "0::relative\n", "::::\n", "\x00\x01", "0::/job"])
def test_a_missing_or_malformed_proc_self_cgroup_is_no_quota(tmp_path, cgroup_line):
    assert share(tmp_path, cgroup_line, {"other/cpu.max": "100000 100000"}, affinity=frozenset(range(4))).cpus == 4


def test_a_folder_where_a_quota_file_should_be_is_no_quota(tmp_path):
    proc, cgroup = fake_system(tmp_path, "0::/job\n4:cpu:/job\n", {})
    (cgroup / "job" / "cpu.max").mkdir(parents=True)
    (cgroup / "cpu" / "job" / "cpu.cfs_quota_us").mkdir(parents=True)
    assert cpu_share.cgroup_cpu_limit(proc, cgroup) is None


def test_no_proc_and_no_cgroup_at_all_is_no_quota(tmp_path):
    assert cpu_share.cgroup_cpu_limit(tmp_path / "none", tmp_path / "neither") is None
    assert cpu_share.usable_cpus(None, None, None) == 1


# ---------------------------------------------------------------- what else keeps them busy


class FakeCpus:
    """Per-CPU busy seconds and our own process's CPU seconds that grow by set amounts per sample."""

    def __init__(self, busy_per_s: list[float], own_per_s: float) -> None:
        self.now = 100.0
        self.busy_per_s, self.own_per_s = busy_per_s, own_per_s

    def busy(self) -> list[float]:
        return [rate * self.now for rate in self.busy_per_s]

    def own(self, with_sibling_ranks: bool) -> dict[int, float]:
        return {1234: self.own_per_s * self.now}

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


def sample(cpus: frozenset[int], fake: FakeCpus, elapsed_s: float = 2.0) -> BusySample:
    taken = BusySample(cpus, busy_seconds=fake.busy, own_seconds=fake.own, clock=fake.clock, sleep=fake.sleep)
    fake.now += elapsed_s
    return taken


def test_a_cpu_kept_busy_by_another_process_leaves_one_thread_of_two(tmp_path):
    # CPU 0 busy with someone else's work, CPU 1 with ours (importing torch): one CPU's worth is another's.
    fake = FakeCpus([1.0, 1.0], own_per_s=1.0)
    assert sample(TWO_OF_64, fake).others() == pytest.approx(1.0)
    found = share(tmp_path)
    found = CpuShare(found.cpus, cpu_share.busy_count(1.0, found.cpus, 2))
    choice = choose_threads(found)
    assert (choice.intra_op, choice.cpus, choice.busy) == (1, 2, 1)
    assert choice.describe() == "torch threads 1 of 2 CPUs (1 busy)"


def test_quiet_cpus_keep_every_thread():
    fake = FakeCpus([0.05, 1.0, 0.9], own_per_s=1.0)  # ours on CPU 1; CPU 2 outside this process's affinity
    others = sample(TWO_OF_64, fake).others()
    assert others == pytest.approx(0.05)
    assert choose_threads(CpuShare(2, cpu_share.busy_count(others, 2, 2))).intra_op == 2


def test_a_short_sample_waits_for_its_minimum():
    fake = FakeCpus([1.0, 0.0], own_per_s=0.0)
    taken = sample(TWO_OF_64, fake, elapsed_s=0.0)
    assert taken.others(min_window_s=0.1) == pytest.approx(1.0)
    assert fake.now == pytest.approx(100.1)


def test_a_sample_psutil_cannot_take_counts_nothing_busy():
    taken = BusySample(TWO_OF_64, busy_seconds=list, own_seconds=lambda ranks: {}, sleep=lambda s: None)
    assert taken.others() == 0.0


def test_under_a_quota_the_busy_cpus_outside_it_do_not_count():
    assert cpu_share.busy_count(10.0, cpus=2, allowed=64) == 0
    assert cpu_share.busy_count(63.0, cpus=2, allowed=64) == 1
    assert cpu_share.busy_count(0.4, cpus=2, allowed=2) == 0
    assert cpu_share.busy_count(0.6, cpus=2, allowed=2) == 1
    assert cpu_share.busy_count(5.0, cpus=2, allowed=2) == 2


def test_every_cpu_busy_still_trains_on_one_thread():
    assert choose_threads(CpuShare(2, busy=2)).intra_op == 1


# ---------------------------------------------------------------- who decides


def test_omp_num_threads_in_the_environment_wins_over_the_rule():
    choice = choose_threads(CpuShare(8), environ={"OMP_NUM_THREADS": "3"}, current=3, defaults={8})
    assert (choice.intra_op, choice.set_by) == (3, "OMP_NUM_THREADS")
    assert choice.describe() == "torch threads 3 of 8 CPUs (set by OMP_NUM_THREADS)"


@pytest.mark.parametrize("value", ["", "zero", "0", "-2"])
def test_an_omp_num_threads_that_is_no_count_is_not_a_setting(value):
    assert choose_threads(CpuShare(2), environ={"OMP_NUM_THREADS": value}, current=2, defaults={2}).set_by == "auto"


def test_the_omp_num_threads_torchrun_sets_for_its_ranks_is_not_the_users():
    assert cpu_share.user_omp_threads({"OMP_NUM_THREADS": "1"}, local_ranks=2) is None
    assert cpu_share.user_omp_threads({"OMP_NUM_THREADS": "1"}, local_ranks=1) == 1
    assert cpu_share.user_omp_threads({"OMP_NUM_THREADS": "4,2"}, local_ranks=2) == 4


def test_the_presets_threads_win_over_omp_num_threads_and_a_checkpoint():
    choice = choose_threads(CpuShare(2, busy=1), preset=4, environ={"OMP_NUM_THREADS": "3"}, current=3,
                            defaults={2}, recorded=2)
    assert (choice.intra_op, choice.set_by) == (4, "preset")


def test_a_users_own_torch_set_num_threads_is_kept():
    choice = choose_threads(CpuShare(64), environ={}, current=5, defaults={32, 64})
    assert (choice.intra_op, choice.set_by) == (5, "torch.set_num_threads")
    assert choose_threads(CpuShare(64, busy=4), environ={}, current=64, defaults={32, 64}).set_by == "auto"


def test_a_resume_takes_the_count_its_checkpoint_recorded_unless_the_user_set_one():
    recorded = choose_threads(CpuShare(2), environ={}, current=2, defaults={2}, recorded=1)
    assert (recorded.intra_op, recorded.set_by) == (1, "checkpoint")
    assert choose_threads(CpuShare(2), environ={"OMP_NUM_THREADS": "2"}, current=2, recorded=1).set_by \
        == "OMP_NUM_THREADS"


def test_torchrun_ranks_share_the_free_cpus():
    choice = choose_threads(CpuShare(8, busy=2), environ={}, ranks=2)
    assert (choice.intra_op, choice.ranks) == (3, 2)
    assert choose_threads(CpuShare(2), environ={}, ranks=4).intra_op == 1
    assert cpu_share.local_ranks({"LOCAL_WORLD_SIZE": "2"}, world_size=4) == 2
    assert cpu_share.local_ranks({}, world_size=4) == 4
    assert cpu_share.local_ranks({"LOCAL_WORLD_SIZE": "2"}, world_size=1) == 1


def test_a_run_in_the_apps_thread_leaves_a_cpu_to_the_ui():
    assert choose_threads(CpuShare(2), environ={}, leave_one=True).intra_op == 1
    assert choose_threads(CpuShare(8, busy=1), environ={}, leave_one=True).intra_op == 6
    assert choose_threads(CpuShare(1), environ={}, leave_one=True).intra_op == 1


def test_torchs_starting_counts_are_the_machines_and_the_affinitys():
    assert cpu_share.torch_default_counts(frozenset(range(4)), machine=64, physical=32) == {4, 32, 64}
    assert cpu_share.torch_default_counts(None, machine=None, physical=None) == set()


# ---------------------------------------------------------------- the choice as data, and applied


def test_a_choice_goes_to_json_and_back_and_a_malformed_one_is_none():
    choice = ThreadChoice(2, 2, cpus=4, busy=1, ranks=2, set_by="preset")
    assert ThreadChoice.from_dict(choice.to_dict()) == choice
    assert ThreadChoice.from_dict({**choice.to_dict(), "added_later": 1}) == choice
    for broken in (None, [], {"intra_op": "2"}, {"inter_op": 2}, {"intra_op": -1, "inter_op": 1},
                   {"intra_op": True, "inter_op": 1}, {"intra_op": 1, "inter_op": 1, "set_by": 3}):
        assert ThreadChoice.from_dict(broken) is None


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_applying_a_choice_sets_torchs_count_and_a_users_is_left_alone(torch_threads):
    applied = cpu_share.apply_threads(ThreadChoice(1, 1, cpus=2))
    assert torch.get_num_threads() == 1 and applied.intra_op == 1
    # A later run in this process does not take the count set here for a user's own.
    assert choose_threads(CpuShare(2), environ={}, current=torch.get_num_threads(), defaults={2}).set_by == "auto"
    torch.set_num_threads(3)
    kept = cpu_share.apply_threads(ThreadChoice(3, 3, set_by="torch.set_num_threads"))
    assert torch.get_num_threads() == 3 and kept.intra_op == 3
