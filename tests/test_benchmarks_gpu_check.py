"""benchmarks/gpu_check.py, what can be checked without a GPU: it says so in one JSON summary and exits 0; it plans
every check the GPU machine needs, within its budget; a check that fails or runs out of time is a result, not a
crash; and it reads the runs' own output right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402

from tests.test_benchmarks_command_figures import IN_MEMORY  # noqa: E402

CHECKS = ["device_panel", "gpu_tests", "presets", "torchrun_nccl", "torchrun_gloo", "overhead"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_in_one_json_summary_and_exits_0():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped"] == "no CUDA device"
    assert list(summary["checks"]) == CHECKS
    assert all(check["skipped"] == "no CUDA device" and check["commands"] for check in summary["checks"].values())


def test_it_plans_every_check_the_gpu_machine_needs(tmp_path):
    checks = {check.name: check for check in gpu_check.plan(tmp_path)}
    assert list(checks) == CHECKS
    (tests,) = checks["gpu_tests"].commands
    assert tests.args[1:3] == ["-m", "pytest"] and tests.args[tests.args.index("-m", 3) + 1] == "gpu"
    presets = [command.args for command in checks["presets"].commands]
    assert [args[args.index("--preset") + 1] for args in presets] == IN_MEMORY
    assert all(args[args.index("--device") + 1] == "cuda" and "--json" in args for args in presets)
    run, probe = checks["torchrun_nccl"].commands
    assert run.args[run.args.index("--nproc-per-node") + 1] == "1" and "cuda" in run.args
    assert probe.args[-1].endswith("nccl_probe.py") and 'init_process_group("nccl")' in gpu_check.NCCL_PROBE
    (gloo,) = checks["torchrun_gloo"].commands
    assert gloo.args[gloo.args.index("--nproc-per-node") + 1] == "2" and gloo.env["CUDA_VISIBLE_DEVICES"] == ""
    workloads, variants = checks["overhead"].commands
    assert "--variants" in variants.args and "--variants" not in workloads.args
    assert all(args[args.index("--device") + 1] == "cuda" for args in (workloads.args, variants.args))
    compile(gpu_check.DEVICE_PANEL, "device_panel", "exec")
    assert "mem_get_info" in gpu_check.DEVICE_PANEL and "nvmlDeviceGetMemoryInfo" in gpu_check.DEVICE_PANEL


def test_the_checks_fit_the_budget_and_each_leaves_time_for_the_ones_after_it(tmp_path):
    checks = gpu_check.plan(tmp_path)
    assert sum(check.expected_s for check in checks) <= gpu_check.BUDGET_S < 240
    later = sum(check.expected_s for check in checks[1:])
    assert gpu_check.time_for(checks, 0, gpu_check.BUDGET_S) == min(checks[0].limit_s, gpu_check.BUDGET_S - later)
    assert gpu_check.time_for(checks, len(checks) - 1, 60.0) == 60.0


def test_a_check_that_runs_out_of_time_or_fails_is_a_result(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 0.5)
    slow = gpu_check.Check("slow", 1, 1, [gpu_check.Command([sys.executable, "-c", "import time; time.sleep(30)"],
                                                            {})], lambda done, folder: {"ok": True})
    result = gpu_check.run_check(slow, tmp_path, 1.0, lambda line: None)
    assert result["ok"] is False and result["error"].startswith("timed out")
    failing = gpu_check.Check("failing", 1, 10, [gpu_check.Command([sys.executable, "-c", "raise SystemExit(3)"],
                                                                   {})], lambda done, folder: {"ok": True})
    assert gpu_check.run_check(failing, tmp_path, 10.0, lambda line: None)["error"] == "exit status 3"
    garbled = gpu_check.Check("garbled", 1, 10, [gpu_check.Command([sys.executable, "-c", "print('x')"], {})],
                              lambda done, folder: json.loads(done[0].stdout))
    assert gpu_check.run_check(garbled, tmp_path, 10.0, lambda line: None)["ok"] is False


def test_with_no_time_left_every_check_is_skipped_and_nothing_runs(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "cuda_device", lambda: "a GPU")
    monkeypatch.setattr(gpu_check, "run_check", lambda *args: pytest.fail("nothing may run"))
    assert gpu_check.main(["--budget-s", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["device"] == "a GPU" and summary["ok"] is False
    assert all(result["skipped"].startswith("out of time") for result in summary["checks"].values())


def test_a_run_is_judged_by_where_it_trained_and_how_it_ended(tmp_path):
    lines = "\n".join(json.dumps(event) for event in (
        {"type": "run_started", "device": "cuda:0", "world_size": 1},
        {"type": "progress", "step": 5},
        {"type": "run_finished", "state": "finished", "step": 10, "elapsed_s": 1.5}))
    (tmp_path / "iris-linear-epochs.json").write_text(json.dumps({"epoch_train_s": [1.0, 0.5, 0.5],
                                                                  "epoch_steps": [10, 10, 10]}))
    done = [subprocess.CompletedProcess([], 0, stdout="a plain line\n" + lines, stderr="")]
    judged = gpu_check._judge_presets(done, tmp_path, ["iris-linear"])
    assert judged["ok"] and judged["runs"]["iris-linear"]["steady_steps_per_s"] == 20.0
    on_cpu = [subprocess.CompletedProcess([], 0, stdout=lines.replace("cuda:0", "cpu"), stderr="")]
    assert not gpu_check._judge_presets(on_cpu, tmp_path, ["iris-linear"])["ok"]
