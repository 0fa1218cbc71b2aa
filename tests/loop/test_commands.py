"""The command line treats a script's run as any other: `runs` lists it, `stop` saves and stops it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from tests.cli_helpers import ROOT, cli_env, run_cli
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.runs.registry import load_run_info

SCRIPT = """
import sys, time, torch
import tui_trainer as tt

model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
run = tt.init(model=model, optimizer=optimizer, name="endless", dir=sys.argv[1], every_steps=1)
while run.step():
    loss = model(torch.ones(1, 2)).pow(2).mean()
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    run.log(loss=loss)
    time.sleep(0.01)
run.finish()
"""


def test_runs_lists_a_live_script_and_stop_saves_and_stops_it(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    runs_dir = tmp_path / "checkpoints"
    process = subprocess.Popen([sys.executable, str(script), str(runs_dir)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**cli_env(tmp_path), "PYTHONPATH": str(ROOT)})
    try:
        for line in process.stdout:
            if line.startswith("run folder: "):
                folder = line.removeprefix("run folder: ").strip()
                break
        while load_run_info(folder).state != "running":
            threading.Event().wait(0.01)
        listed = run_cli(["runs", "--checkpoint-dir", str(runs_dir)], tmp_path)
        assert listed.returncode == 0 and "endless-" in listed.stdout and "running" in listed.stdout, listed
        stopped = run_cli(["stop", "--checkpoint-dir", str(runs_dir), folder], tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped at step" in stopped.stdout and "last.pt" in stopped.stdout
        assert process.wait(60) == 0
    finally:
        process.kill()
    info = load_run_info(folder)
    assert info.state == "stopped" and info.reason == "tui-trainer stop"
    assert load_checkpoint(info.last_checkpoint)["meta"]["step"] == info.step > 0
