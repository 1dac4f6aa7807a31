"""The ``truthwatch`` command line: train and export a model, evaluate an export.

Examples
--------
::

    truthwatch train                       # artifacts/models/digits/<version>/
    truthwatch train --if-missing          # only when no model is exported yet
    truthwatch evaluate --backend tensorflow
    truthwatch replay lost.log --table NAME  # capture_failed log lines back into the table
    truthwatch models                      # exported versions and their held-out metrics
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from truthwatch.errors import TruthwatchError

DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_MODEL_NAME = "digits"


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ logging goes to stderr before Python logging is configured; level 2 keeps
    # warnings and errors only. A user who set the variable keeps their choice.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _model_dir(args: argparse.Namespace) -> Path:
    return Path(args.model) if args.model else args.artifacts / "models" / args.name


def cmd_train(args: argparse.Namespace) -> int:
    """Train and export, or with ``--if-missing`` reuse an export that is already there."""
    from truthwatch.registry import resolve_model_dir

    if args.if_missing:
        try:
            folder = resolve_model_dir(args.artifacts / "models" / args.name)
        except TruthwatchError:
            pass
        else:
            _say(f"model already exported: {folder} (remove it or drop --if-missing to train again)")
            return 0

    _quiet_tensorflow()
    from truthwatch.training import TrainConfig, train_and_export

    config = TrainConfig(name=args.name, seed=args.seed, epochs=args.epochs)
    _say(f"training {config.name} on scikit-learn's digits (seed {config.seed}, {config.epochs} epochs)...")
    result = train_and_export(args.artifacts, config)
    metrics = result.card.heldout_metrics
    _say(f"exported version {result.card.version} to {result.folder}")
    _say(
        f"held-out ({metrics.rows} rows): accuracy {metrics.accuracy:.4f}, macro precision "
        f"{metrics.precision_macro:.4f}, recall {metrics.recall_macro:.4f}, F1 {metrics.f1_macro:.4f}"
    )
    _say(f"TensorBoard: tensorboard --logdir {result.tensorboard_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Serve the held-out digits through the model runtime and score what it answers."""
    if args.backend == "tensorflow":
        _quiet_tensorflow()
    from truthwatch.dataset import load_digits_split
    from truthwatch.evaluation import evaluate_predictions
    from truthwatch.runtime import load_runtime

    runtime = load_runtime(_model_dir(args), backend=args.backend)
    card = runtime.card
    split = load_digits_split(card.training_data.heldout_fraction, card.training_data.seed)
    if split.fingerprint != card.training_data.fingerprint:
        _say("warning: the digits data differ from the data this model was trained on")

    labels, _ = runtime.predict(split.x_heldout)
    metrics = evaluate_predictions(split.y_heldout, labels, card.class_names)
    _say(f"model {card.name} version {card.version}, back end {runtime.backend_name}")
    _say(f"held-out digits served through the runtime: {metrics.rows} rows")
    _say(f"accuracy        {metrics.accuracy:.4f}")
    _say(f"macro F1        {metrics.f1_macro:.4f}")
    _say("recall per class")
    for name, recall in metrics.recall_per_class.items():
        _say(f"  {name:>3}  {recall:.4f}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the exported versions of a model with their held-out metrics and variants."""
    from truthwatch.card import read_card
    from truthwatch.registry import LATEST_FILE, list_versions

    model_root = args.artifacts / "models" / args.name
    folders = list_versions(model_root)
    if not folders:
        _say(f"no exported versions under {model_root}; run `truthwatch train`")
        return 1

    pointer = model_root / LATEST_FILE
    latest = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    _say(f"{'version':<14}{'created':<22}{'accuracy':>9}{'macro F1':>10}  variants (bytes, accuracy)")
    for folder in folders:
        card = read_card(folder)
        metrics = card.heldout_metrics
        variants = ", ".join(
            f"{name} {v.bytes} {v.heldout_accuracy:.4f}" + ("" if v.exported else " (not shipped)")
            for name, v in card.variants.items()
        )
        mark = "*" if card.version == latest else " "
        scores = f"{metrics.accuracy:>9.4f}{metrics.f1_macro:>10.4f}"
        _say(f"{mark}{card.version:<13}{card.created:<22}{scores}  {variants}")
    _say("* = LATEST")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Put the records of ``capture_failed`` log lines back into the predictions table."""
    import boto3

    from truthwatch.capture import DynamoDBRecorder, read_failure_lines, replay

    with args.file.open(encoding="utf-8", errors="replace") as lines:
        found = read_failure_lines(lines)
    recorder = DynamoDBRecorder(boto3.client("dynamodb"), args.table)
    failed = replay(found.records, recorder)
    _say(
        f"replayed {len(found.records) - len(failed)} of {len(found.records)} records into {args.table} "
        f"({found.skipped} other lines skipped, {found.invalid} unreadable capture_failed lines)"
    )
    return 1 if failed or found.invalid else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``truthwatch`` command."""
    parser = argparse.ArgumentParser(
        prog="truthwatch", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help="artifacts folder")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on the digits and export a versioned model")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--if-missing", action="store_true", help="do nothing when a model is exported")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score the held-out digits through the runtime")
    evaluate.add_argument("--model", help="version folder, or model folder with LATEST")
    evaluate.add_argument("--backend", choices=("litert", "tensorflow"), default="litert")
    evaluate.set_defaults(func=cmd_evaluate)

    models = commands.add_parser("models", help="list exported versions with their held-out metrics")
    models.set_defaults(func=cmd_models)

    replay_cmd = commands.add_parser("replay", help="put capture_failed log lines back into the table")
    replay_cmd.add_argument("file", type=Path, help="CloudWatch Logs export or JSON lines")
    replay_cmd.add_argument(
        "--table", default=os.environ.get("PREDICTIONS_TABLE"), required="PREDICTIONS_TABLE" not in os.environ
    )
    replay_cmd.set_defaults(func=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``truthwatch`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        status: int = args.func(args)
    except TruthwatchError as exc:
        sys.stderr.write(f"truthwatch: {exc}\n")
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
