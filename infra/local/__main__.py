"""``python -m infra.local serve | demo``: the local stack on the terminal, or the story played on it.

Examples
--------
::

    python -m infra.local serve                       # make serve
    python -m infra.local serve --period 30 --parameter AccuracyThreshold=0.95
    python -m infra.local demo                        # make demo (after training)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from infra.local.stack import REPO_ROOT, Console, LocalStack, StackConfig, StackError


def _parameters(items: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--parameter takes Name=Value, got {item!r}")
        values[name] = value
    return values


def _config(args: argparse.Namespace, api_port: int, moto_port: int) -> StackConfig:
    return StackConfig(
        api_port=api_port,
        moto_port=moto_port,
        model_dir=args.model_dir,
        state_dir=args.state_dir,
        period_s=args.period,
        config_env=args.config_env,
        parameters=_parameters(args.parameter),
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the stack and keep it up until Ctrl-C, reporting requests as they are answered."""
    console = Console()
    # `kill` (SIGTERM) stops the stack as cleanly as Ctrl-C does. SIGINT is set too: a shell starts
    # a background job (`make serve &`) with SIGINT ignored, and `kill -INT` must still stop it.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    stack = LocalStack(_config(args, args.port, args.moto_port), console)
    stopped = threading.Event()
    last: dict[int, int] = {}
    stack.start()
    try:
        # Said inside the try: a signal sent as soon as "ready" is read must find the handler below.
        console.say("ready; Ctrl-C stops everything")
        while not stopped.wait(5):
            counts = stack.request_counts()
            if counts != last:
                detail = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
                console.say(f"requests answered: {sum(counts.values())} ({detail})")
                last = counts
    except KeyboardInterrupt:
        console.say("stopping")
    finally:
        stack.stop()
    answered = sum(stack.request_counts().values())
    console.say(f"stopped after {answered} requests and {len(stack.emails)} emails")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start a stack on free ports and play the healthy / drifted / recovered story on it."""
    from infra.local.demo import run_demo

    config = _config(args, args.port, args.moto_port)
    return run_demo(config)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m infra.local``."""
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log the stack's own DEBUG lines")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, port, moto_port, period in (
        ("serve", cmd_serve, 3000, 5050, 5.0),
        ("demo", cmd_demo, 0, 0, 1.5),
    ):
        command = commands.add_parser(name, help=(func.__doc__ or "").splitlines()[0])
        command.add_argument("--port", type=int, default=port, help="port of the inference API (0: any free)")
        command.add_argument("--moto-port", type=int, default=moto_port, help="port of moto (0: any free)")
        command.add_argument(
            "--model-dir",
            type=Path,
            default=REPO_ROOT / "artifacts" / "models" / "digits",
            help="exported model folder (with LATEST)",
        )
        command.add_argument(
            "--state-dir", type=Path, default=REPO_ROOT / "artifacts" / "local", help="outbox and logs"
        )
        command.add_argument(
            "--period", type=float, default=period, help="seconds one alarm period lasts locally"
        )
        command.add_argument("--config-env", default="default", help="samconfig.toml environment")
        command.add_argument(
            "--parameter", action="append", default=[], metavar="NAME=VALUE", help="template parameter"
        )
        command.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command, turning a stack that cannot start into a message and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        status: int = args.func(args)
    except StackError as exc:
        sys.stderr.write(f"local stack: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("local stack: interrupted\n")
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
