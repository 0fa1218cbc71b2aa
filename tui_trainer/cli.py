"""The command line: open the app, run headless, or list presets and checkpoints.

Exit codes: 0 done, 1 training failed or its last.pt could not be written (a full disk, a read-only folder),
2 bad input, 128+N stopped by signal N (after saving).
torch and textual are imported only by the commands that need them, so --help and `presets` are instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tui_trainer import __version__
from tui_trainer.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError, report

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "main"]
COMMANDS = ("presets", "checkpoints", "runs", "attach", "stop")

# Flag -> the preset field it sets.
OVERRIDE_FLAGS: dict[str, str] = {
    "epochs": "epochs",
    "max_steps": "max_steps",
    "lr": "optimizer.lr",
    "optimizer": "optimizer.name",
    "loss": "loss.name",
    "model": "model.name",
    "batch_size": "data.batch_size",
    "device": "device",
    "seed": "seed",
    "precision": "precision",
    "checkpoint_dir": "checkpoint.dir",
}


def _run_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="tui-trainer",
        description="Train PyTorch models from the terminal: a full-screen cockpit, or --headless for CI.",
        epilog="Other commands:\n"
               "  tui-trainer presets [--presets-dir DIR]   list the presets\n"
               "  tui-trainer checkpoints [DIR]             list checkpoints with their metadata\n"
               "  tui-trainer runs                          list runs and their state\n"
               "  tui-trainer attach [RUN]                  open the app on a detached run\n"
               "  tui-trainer stop RUN                      ask a live run to save and stop\n\n"
               "Exit codes: 0 done, 1 training failed or last.pt not written, 2 bad input, 128+N stopped by "
               "signal N (saved first).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tui-trainer {__version__}")
    parser.add_argument("--preset", metavar="NAME|PATH", help="a preset's name or a YAML file (default: digits-cnn)")
    parser.add_argument("--presets-dir", metavar="DIR", help="another folder of presets (also $TUI_TRAINER_PRESETS)")
    parser.add_argument("--headless", action="store_true", help="train without the app: progress on stdout")
    parser.add_argument("--start", action="store_true", help="app: start training at once")
    parser.add_argument("--json", action="store_true", help="headless: print every event as a JSON line")
    parser.add_argument("--processes", metavar="N", type=int, default=1,
                        help="with --detach: N data-parallel processes under torchrun (default 1)")
    parser.add_argument("--detach", action="store_true",
                        help="train in a background process that outlives the terminal (attach with "
                             "`tui-trainer attach`)")
    parser.add_argument("--in-thread", action="store_true",
                        help="app: train in a thread of the app's own process instead of an engine process of its "
                             "own (slower: the UI and training share Python's interpreter lock)")
    parser.add_argument("--resume", metavar="PATH", help="continue from a checkpoint (its config, plus overrides)")
    parser.add_argument("--trust-code", action="store_true",
                        help="with --resume: let this checkpoint's stored config import the code it names (e.g. "
                             "model.import); without it, such a checkpoint is refused, since a file is data")
    group = parser.add_argument_group("overrides (each sets one preset field)")
    group.add_argument("--epochs", metavar="N")
    group.add_argument("--max-steps", metavar="N")
    group.add_argument("--lr", metavar="X", help="learning rate, e.g. 3e-4")
    group.add_argument("--optimizer", metavar="NAME", help="sgd, adam, adamw, rmsprop")
    group.add_argument("--loss", metavar="NAME")
    group.add_argument("--model", metavar="NAME", help="linear, mlp, cnn")
    group.add_argument("--batch-size", metavar="N")
    group.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N, mps")
    group.add_argument("--precision", metavar="P", help="fp32, bf16, fp16")
    group.add_argument("--seed", metavar="N")
    group.add_argument("--checkpoint-dir", metavar="DIR", help="folder for run folders (default: checkpoints)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="set any field, e.g. --set model.options.dropout=0.1 (repeatable)")
    return parser


def _presets_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="tui-trainer presets", description="List the presets.")
    parser.add_argument("--presets-dir", metavar="DIR")
    parser.add_argument("--json", action="store_true", help="one JSON object per preset")
    return parser


def _runs_parser(command: str) -> argparse.ArgumentParser:
    descriptions = {
        "runs": "List the runs in the checkpoint folder with their state, newest first. Piped, one line per run "
                "with tab-separated fields: run, state, epoch, step, best, monitor, started, pid, detached, preset, "
                "note.",
        "attach": "Open the app on a detached run: its whole history, then live, with full control.",
        "stop": "Ask a live run to save last.pt and stop.",
    }
    parser = _OneLineErrors(prog=f"tui-trainer {command}", description=descriptions[command])
    if command != "runs":
        parser.add_argument("run", nargs="?" if command == "attach" else None, metavar="RUN",
                            help="a run id (its folder's name) or a run folder's path"
                                 + ("; default: the newest live run" if command == "attach" else ""))
    parser.add_argument("--checkpoint-dir", default="checkpoints", metavar="DIR",
                        help="the folder of run folders (default: checkpoints)")
    if command == "runs":
        parser.add_argument("--json", action="store_true", help="one JSON object per run")
    return parser


def _checkpoints_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="tui-trainer checkpoints",
                                     description="List checkpoints, newest first, without loading their weights.")
    parser.add_argument("dir", nargs="?", default="checkpoints", help="a checkpoint folder (default: checkpoints)")
    parser.add_argument("--json", action="store_true", help="one JSON object per checkpoint")
    return parser


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(message: str) -> int:
    return report(message, EXIT_BAD_INPUT)


def _launch_options(args: argparse.Namespace):
    """Values are read like preset values (`--lr 1e-3` is a float) and validated with the preset."""
    from tui_trainer.config import parse_assignment
    from tui_trainer.launch import LaunchOptions
    from tui_trainer.yaml_io import parse_scalar

    options = LaunchOptions(preset=args.preset, presets_dir=args.presets_dir, resume=args.resume,
                            start=args.start, json=args.json, detach=args.detach, processes=args.processes,
                            in_thread=args.in_thread, trust_code=args.trust_code)
    for flag, key in OVERRIDE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            options.overrides[key] = parse_scalar(value)
            options.override_sources[key] = f"--{flag.replace('_', '-')}"
    for assignment in args.set:
        key, value = parse_assignment(assignment)
        options.overrides[key] = value
        options.override_sources[key] = f"--set {key}"
    return options


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `tui-trainer runs | head`: the reader left; nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        from tui_trainer import listing

        command, rest = argv[0], argv[1:]
        if command == "presets":
            args = _presets_parser().parse_args(rest)
            return listing.print_presets(args.presets_dir, as_json=args.json)
        if command == "checkpoints":
            args = _checkpoints_parser().parse_args(rest)
            return listing.print_checkpoints(args.dir, as_json=args.json)
        args = _runs_parser(command).parse_args(rest)
        if command == "runs":
            return listing.print_runs(args.checkpoint_dir, as_json=args.json)
        if command == "stop":
            from tui_trainer.detached.commands import stop_run

            return stop_run(args.checkpoint_dir, args.run)
        from tui_trainer.detached.commands import attach_target

        target = attach_target(args.checkpoint_dir, args.run)
        if isinstance(target, int):
            return target
        from tui_trainer.launch import LaunchOptions
        from tui_trainer.ui.app import run_app

        return run_app(LaunchOptions(attach=target))

    args = _run_parser().parse_args(argv)
    try:
        options = _launch_options(args)
    except UserError as error:
        return report(error)
    if args.json and not args.headless:
        return _fail("--json goes with --headless")
    if args.processes < 1 or args.processes > 1024:
        return _fail(f"--processes: given {args.processes}; allowed: 1 to 1024")
    if args.processes > 1 and not args.detach:
        return _fail("--processes goes with --detach (or launch torchrun yourself: see the README)")
    if args.trust_code and not args.resume:
        return _fail("--trust-code goes with --resume (a preset you name is already your choice)")
    if args.in_thread and (args.headless or args.detach):
        return _fail("--in-thread goes with the app alone (not with --headless or --detach)")
    if args.headless and args.detach:
        from tui_trainer.detached.commands import start_detached

        return start_detached(options)
    if args.headless:
        from tui_trainer.headless import run_headless

        return run_headless(options)
    from tui_trainer.ui.app import run_app

    return run_app(options)


if __name__ == "__main__":
    sys.exit(main())
