"""A setting given again on resume (--resume CKPT --lr X, --set ...) takes effect, shown as a live change is, or
is refused with one line: never written to the new config.yaml and then ignored because the checkpoint's
optimizer, scheduler or trackers hold the old one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tui_trainer.config import ConfigError, apply_overrides, config_from_dict
from tui_trainer.engine.checkpoints import load_checkpoint, save_checkpoint
from tui_trainer.engine.events import HyperparametersChanged, Progress, RunStarted, Warning
from tui_trainer.engine.metrics import read_metrics

SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9}


def trained(make_config, run_trainer, handler=None, **dotted) -> Path:
    """One epoch of iris (8 steps); its last.pt."""
    settings = {"epochs": 1, "optimizer": SGD, **dotted}
    finished, _, trainer = run_trainer(make_config("iris-linear", **settings), handler=handler)
    assert finished.state == "finished"
    return trainer.run_dir / "last.pt"


def resumed_config(checkpoint: Path, **overrides):
    """What the command line makes of --resume CKPT with overrides: the checkpoint's config, the flags on top."""
    raw = load_checkpoint(checkpoint)["config"]
    return config_from_dict(apply_overrides(raw, {"epochs": 2, **overrides}), source=str(checkpoint))


@pytest.mark.parametrize("key, value, before", [("lr", 0.02, 0.1), ("weight_decay", 0.01, 0.0),
                                                ("momentum", 0.5, 0.9)])
def test_an_optimizer_override_on_resume_takes_effect_as_a_live_change(make_config, run_trainer, key, value,
                                                                       before):
    checkpoint = trained(make_config, run_trainer)
    finished, events, trainer = run_trainer(resumed_config(checkpoint, **{f"optimizer.{key}": value}),
                                            resume_from=checkpoint)
    assert finished.state == "finished" and finished.step == 16
    assert trainer.optimizer.param_groups[0][key] == value, "the optimizer trains with the new value"
    (changed,) = events.of(HyperparametersChanged)
    assert (changed.step, changed.epoch, changed.changes, changed.previous) == (8, 2, {key: value}, {key: before})
    kinds = [type(event) for event in events.events]
    assert kinds.index(RunStarted) < kinds.index(HyperparametersChanged) < kinds.index(Progress)
    records = [record for record in read_metrics(trainer.run_dir / "metrics.jsonl")
               if record["type"] == "hyperparameters_changed"]
    assert [(record["step"], record["changes"]) for record in records] == [(8, {key: value})], "on the chart"
    saved = yaml.safe_load((trainer.run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["optimizer"][key] == value
    assert load_checkpoint(trainer.run_dir / "last.pt")["config"]["optimizer"][key] == value


def test_an_lr_override_on_resume_keeps_the_schedule_going_from_the_new_base(make_config, run_trainer):
    checkpoint = trained(make_config, run_trainer, scheduler={"name": "cosine", "warmup_steps": 4})
    finished, events, trainer = run_trainer(resumed_config(checkpoint, **{"optimizer.lr": 0.05}),
                                            resume_from=checkpoint)
    assert finished.state == "finished"
    assert trainer.scheduler.base_lrs == [0.05]
    assert events.of(HyperparametersChanged)[0].previous == {"lr": 0.1}


def test_a_resume_without_overrides_changes_nothing(make_config, run_trainer):
    checkpoint = trained(make_config, run_trainer)
    finished, events, trainer = run_trainer(resumed_config(checkpoint), resume_from=checkpoint)
    assert finished.state == "finished" and not events.of(HyperparametersChanged)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1


def test_a_live_change_is_what_a_checkpoint_records_so_an_override_back_to_the_preset_value_counts(
        make_config, run_trainer):
    def tweak(event, trainer):
        if isinstance(event, Progress) and event.step == 2:
            trainer.controls.set_hyperparameters(lr=0.05)

    checkpoint = trained(make_config, run_trainer, handler=tweak, logging__every_steps=1)
    assert load_checkpoint(checkpoint)["config"]["optimizer"]["lr"] == 0.05

    _finished, events, trainer = run_trainer(resumed_config(checkpoint), resume_from=checkpoint)
    assert not events.of(HyperparametersChanged) and trainer.optimizer.param_groups[0]["lr"] == 0.05

    checkpoint = trainer.run_dir / "last.pt"
    _, events, trainer = run_trainer(resumed_config(checkpoint, **{"optimizer.lr": 0.1, "epochs": 3}),
                                     resume_from=checkpoint)
    assert [event.changes for event in events.of(HyperparametersChanged)] == [{"lr": 0.1}]
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("settings, overrides, field", [
    ({"optimizer": {**SGD, "nesterov": False}}, {"optimizer.nesterov": True}, "optimizer.nesterov"),
    ({"optimizer": {"name": "adam", "lr": 0.01}}, {"optimizer.betas": [0.8, 0.99]}, "optimizer.betas"),
    ({"optimizer": {"name": "rmsprop", "lr": 0.01, "alpha": 0.9}}, {"optimizer.alpha": 0.5}, "optimizer.alpha"),
    ({}, {"seed": 7}, "seed"),
    ({"scheduler": {"name": "onecycle", "max_lr": 0.2}}, {"epochs": 3}, "epochs"),
    ({"scheduler": {"name": "onecycle", "max_lr": 0.2}}, {"epochs": 3, "max_steps": 20}, "epochs"),
    ({"scheduler": {"name": "onecycle", "max_lr": 0.2}}, {"scheduler.max_lr": 0.5}, "scheduler.max_lr"),
], ids=["nesterov", "betas", "alpha", "seed", "onecycle-epochs", "onecycle-max-steps", "onecycle-max-lr"])
def test_what_the_checkpoints_state_keeps_is_refused_on_resume_with_one_line(make_config, run_trainer, recorder,
                                                                            settings, overrides, field):
    from tui_trainer.engine.trainer import Trainer

    epochs = {"epochs": 2} if "scheduler" in settings else {}
    checkpoint = trained(make_config, run_trainer, **{**settings, **epochs})
    config = resumed_config(checkpoint, **{"epochs": 2, **overrides})
    with pytest.raises(ConfigError) as refused:
        Trainer(config, recorder, resume_from=checkpoint).run()
    assert refused.value.path == field and "\n" not in str(refused.value)
    assert "resum" in str(refused.value)
    assert not recorder.of(Progress), "refused before training"


def test_a_plateau_schedules_factor_and_patience_given_on_resume_are_used(make_config, run_trainer):
    checkpoint = trained(make_config, run_trainer, scheduler={"name": "plateau", "factor": 0.5, "patience": 2})
    _, _, trainer = run_trainer(resumed_config(checkpoint, **{"scheduler.factor": 0.2, "scheduler.patience": 0}),
                                resume_from=checkpoint)
    assert (trainer.scheduler.factor, trainer.scheduler.patience) == (0.2, 0)


def test_a_new_monitor_on_resume_starts_its_best_afresh(make_config, run_trainer, tmp_path):
    """An accuracy of 0.0 is no bar for a loss: the resumed run judges best.pt and early stopping by the metric
    it was given, from its first epoch on."""
    checkpoint = trained(make_config, run_trainer, early_stopping={"monitor": "val_accuracy", "patience": 50})
    payload = load_checkpoint(checkpoint)
    payload["trainer"].update(best_value=0.0, stopping_best=0.0)  # a first epoch that got nothing right
    checkpoint = tmp_path / "nothing-right.pt"
    save_checkpoint(checkpoint, payload)
    finished, _, trainer = run_trainer(
        resumed_config(checkpoint, **{"checkpoint.monitor": "val_loss", "early_stopping.monitor": "val_loss"}),
        resume_from=checkpoint)
    resumed = load_checkpoint(trainer.run_dir / "last.pt")["trainer"]
    assert finished.best_epoch == 2 and resumed["best_value"] == finished.best["val_loss"]
    assert resumed["stopping_best"] == finished.last["val_loss"] and resumed["bad_epochs"] == 0


def test_a_live_change_the_optimizers_other_settings_refuse_is_one_warning(make_config, run_trainer):
    """nesterov needs momentum, as the preset says: a checkpoint's config stays one that loads."""
    def tweak(event, trainer):
        if isinstance(event, Progress) and event.step == 2:
            trainer.controls.set_hyperparameters(momentum=0.0)

    config = make_config("iris-linear", epochs=1, logging__every_steps=1,
                         optimizer={**SGD, "nesterov": True})
    _finished, events, trainer = run_trainer(config, handler=tweak)
    assert not events.of(HyperparametersChanged)
    assert any("nesterov needs momentum" in event.message and "unchanged" in event.message
               for event in events.of(Warning))
    assert trainer.optimizer.param_groups[0]["momentum"] == 0.9
    stored = load_checkpoint(trainer.run_dir / "last.pt")["config"]
    assert config_from_dict(json.loads(json.dumps(stored))).optimizer.momentum == 0.9
