"""The `fewshot-prelabel` command: label files, serve the backend, run workers, start the fake LLM."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from backend.commands.cli_errors import clean_message
from backend.labeling.errors import LabelingError
from backend.logs import configure_logging
from backend.settings import Settings, redacted


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except Exception as exc:  # noqa: BLE001 - only the errors a user can fix are caught below
        message = clean_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot-prelabel", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    label = commands.add_parser("label", help="label a JSONL file of tasks with few-shot prompts")
    label.add_argument("--config", required=True, type=Path, help="Label Studio labeling config (XML file)")
    label.add_argument(
        "--seeds",
        action="append",
        default=[],
        type=Path,
        help="seed examples: JSONL {text,label} rows or a Label Studio JSON export (repeatable)",
    )
    label.add_argument("--input", required=True, type=Path, help='JSONL rows: {"text": ...} or task JSON')
    label.add_argument("--output", required=True, type=Path, help="output file; re-running resumes")
    label.add_argument(
        "--format",
        choices=("jsonl", "label-studio"),
        default="jsonl",
        help="jsonl: the input rows with label, score, model_version (default); label-studio: a "
        "JSON list of tasks with predictions that Label Studio imports as pre-annotations",
    )
    label.add_argument("--concurrency", type=int, help="requests in flight (default LABEL_CONCURRENCY)")
    label.add_argument("--mode", choices=("json", "logprobs", "text"), help="answer mode (default LLM_ANSWER_MODE)")
    label.add_argument("--scoring", choices=("answer", "echo"), help="how scores are computed (default LLM_SCORING)")
    label.add_argument("--model", help="model name (default LLM_MODEL)")
    label.add_argument("--template", help="demonstration template (default PROMPT_TEMPLATE)")
    label.add_argument(
        "--redis-url",
        help="label through the rq workers listening on this Redis "
        "(every worker machine helps; without it, labeling runs in this process)",
    )
    label.add_argument("--no-progress", action="store_true", help="no progress bar")
    label.add_argument("--summary-json", type=Path, help="also write the run summary as JSON here")
    label.set_defaults(handler=_label)

    serve = commands.add_parser("serve", help="run the ML backend under gunicorn (BACKEND_HOST, BACKEND_PORT)")
    serve.add_argument("--host", help="bind address (default BACKEND_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default BACKEND_PORT, 9090)")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (default WEB_WORKERS)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run an RQ worker that labels tasks (start as many as you like)")
    worker.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    worker.set_defaults(handler=_worker)

    run = commands.add_parser("run", help="run the backend with its workers (and Redis if none is reachable)")
    run.add_argument("--workers", type=int, default=2, help="rq worker processes (default 2)")
    run.add_argument("--log-dir", type=Path, help="where the processes' logs go (default: a temp dir)")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="a local Label Studio with a pre-labeled demo project, in one command")
    demo.add_argument("--port", type=int, default=8080, help="Label Studio's port (default 8080; a free one if taken)")
    demo.add_argument("--workers", type=int, default=2, help="rq worker processes (default 2)")
    demo.add_argument("--exit-when-ready", action="store_true", help="stop everything once the pre-labels are there")
    demo.set_defaults(handler=_demo)

    pre = commands.add_parser("prelabel", help="pre-label a whole Label Studio project through the workers")
    pre.add_argument("--project", type=int, required=True, help="Label Studio project id")
    which = pre.add_mutually_exclusive_group()
    which.add_argument(
        "--missing",
        action="store_true",
        default=True,
        help="only tasks without a prediction of the current model_version (default)",
    )
    which.add_argument("--all", action="store_true", help="every task (cached answers cost nothing)")
    pre.add_argument("--no-wait", action="store_true", help="start the run and return; follow it at /status")
    pre.set_defaults(handler=_prelabel)

    ev = commands.add_parser(
        "evaluate",
        help="cross-validate the labeler on human-labeled tasks; JSON, Markdown "
        "and HTML reports with a no-LLM baseline",
    )
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        type=Path,
        help='gold labels: JSONL {"text", "label"} rows (a label, a list, '
        'spans or {"<control>": value}, as seed files) or a Label Studio JSON export',
    )
    source.add_argument("--project", type=int, help="a Label Studio project: its annotations are the gold labels")
    ev.add_argument("--config", type=Path, help="labeling config (required with --input; default: the project's)")
    ev.add_argument("--seeds", action="append", default=[], type=Path, help="extra demonstrations (repeatable)")
    ev.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    ev.add_argument("--limit", type=int, default=0, help="evaluate a reproducible sample of this many tasks")
    ev.add_argument("--seed", type=int, default=0, help="seed of the folds and the sample")
    ev.add_argument(
        "--target-accuracy",
        type=float,
        default=0.9,
        help="the threshold recommended is the lowest score reaching this accuracy (default 0.9)",
    )
    ev.add_argument("--output-dir", type=Path, default=Path("evaluation"), help="where the reports go")
    ev.add_argument("--mode", choices=("json", "logprobs", "text"), help="answer mode (default LLM_ANSWER_MODE)")
    ev.add_argument("--scoring", choices=("answer", "echo"), help="how scores are computed (default LLM_SCORING)")
    ev.add_argument("--selection", help="demonstration selection (default DEMO_SELECTION)")
    ev.add_argument("--k", type=int, help="k of the selection (default DEMO_K)")
    ev.add_argument("--calibration", choices=("none", "contextual"), help="default CALIBRATION")
    ev.add_argument("--concurrency", type=int, help="requests in flight (default LABEL_CONCURRENCY)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_evaluate)

    quality = commands.add_parser(
        "quality",
        help="live quality: how often annotators kept the pre-labels, per "
        "model_version, label and score, read from Label Studio",
    )
    quality.add_argument("--project", type=int, required=True, help="Label Studio project id")
    quality.add_argument("--json", action="store_true", help="every figure as JSON (what GET /quality answers)")
    quality.add_argument(
        "--target", type=float, help="accepted share the threshold is recommended for (default QUALITY_TARGET, 0.95)"
    )
    quality.set_defaults(handler=_quality)

    from backend.commands.export import add_parser as add_export_parser

    add_export_parser(commands)

    from backend.devtools.fake_llm.server import DESCRIPTION as FAKE_DESCRIPTION
    from backend.devtools.fake_llm.server import add_arguments as add_fake_arguments

    fake = commands.add_parser(
        "fake-llm", help="start the FAKE OpenAI-compatible stand-in server (tests, demos)", description=FAKE_DESCRIPTION
    )
    add_fake_arguments(fake)
    fake.set_defaults(handler=_fake_llm)
    return parser


def _label(args) -> int:
    from backend.labeling.examples import read_seeds
    from backend.labeling.parser import parse_spec

    settings = Settings.from_env(
        model=args.model,
        answer_mode=args.mode,
        template=args.template,
        concurrency=args.concurrency,
        scoring=args.scoring,
    )
    configure_logging(settings)
    spec = parse_spec(_read(args.config))
    examples, skipped = read_seeds(args.seeds + [Path(p) for p in settings.seed_paths], spec)
    if skipped:
        print(
            f"seeds: skipped {sum(skipped.values())} without a usable answer: "
            + ", ".join(f"{reason} ({n})" for reason, n in skipped.most_common(5)),
            file=sys.stderr,
        )
    if args.redis_url:
        summary = _label_with_workers(args, settings, spec, examples)
    else:
        _check_llm(settings)
        summary = _label_here(args, settings, spec, examples)
    for line in summary.lines():
        print(line)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return 0 if summary.failed == 0 else 1


def _describe(args, settings, labeler) -> None:
    shots = f"{len(labeler.examples)} demonstrations" if labeler.examples else "no demonstrations (zero-shot)"
    print(
        f"labeling {args.input} with {shots}, model {settings.model}, "
        f"{'echo scoring' if labeler.echo else f'mode {labeler.prompt.mode}'}, model_version {labeler.model_version}",
        file=sys.stderr,
    )
    print(f"demonstrations per prompt: {labeler.choice.summary()}", file=sys.stderr)


def _label_here(args, settings, spec, examples):
    from backend.commands.label import label_file
    from backend.model.client import LLMClient
    from backend.model.labeler import Labeler, label_many

    labeler = Labeler(spec, examples, settings, LLMClient(settings))
    _describe(args, settings, labeler)
    return label_file(
        spec,
        args.input,
        args.output,
        lambda items: label_many(labeler, items, settings.concurrency),
        model=labeler.prompt.model,
        prices=settings.price_table,
        progress=not args.no_progress,
        fmt=args.format,
    )


def _label_with_workers(args, settings, spec, examples):
    """Through the rq workers: the tasks are queued before the labeler and the LLM client are even imported
    (remote_label), so the command's own start-up overlaps the workers' labeling."""
    from backend.commands.label import label_file
    from backend.commands.remote_label import WorkerLabeling
    from backend.labeling.prompt import order_examples
    from backend.state import store

    connection = store.connect(args.redis_url)
    if not store.ping(connection):
        raise LabelingError(f"Redis is unreachable at {redacted(args.redis_url)}")
    options = {
        k: v
        for k, v in (("mode", args.mode), ("model", args.model), ("template", args.template), ("scoring", args.scoring))
        if v
    }
    remote = WorkerLabeling(
        settings,
        connection,
        spec.config,
        order_examples(examples),
        options,
        on_context=lambda labeler: _describe(args, settings, labeler),
    )
    try:
        if not remote.workers():
            print("warning: no worker listens on the queue yet; start `fewshot-prelabel worker`", file=sys.stderr)
        return label_file(
            spec,
            args.input,
            args.output,
            remote,
            model=settings.model,
            prices=settings.price_table,
            progress=not args.no_progress,
            fmt=args.format,
        )
    finally:
        remote.close()


def _serve(args) -> int:
    settings = Settings.from_env()
    host, port = args.host or settings.host, args.port or settings.port
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "backend.web.wsgi:app",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(args.workers or settings.web_workers),
        "--threads",
        str(settings.web_threads),
        "--worker-class",
        "gthread",
        "--timeout",
        str(int(settings.predict_deadline) + 30),
        "--graceful-timeout",
        "10",
        "--access-logfile",
        "-",
        "--log-level",
        settings.log_level.lower(),
    ]
    command += _gunicorn_no_control_socket()
    print(
        f"serving the ML backend on http://{host}:{port} (Redis {redacted(settings.redis_url)})",
        file=sys.stderr,
        flush=True,
    )
    os.execv(sys.executable, command)


def _gunicorn_no_control_socket() -> list[str]:
    """gunicorn >= 25.1 opens a control socket, by default in ~/.gunicorn/ (one path for every instance on the
    machine, left behind): the backend has no use for it."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def _worker(args) -> int:
    from backend.pipeline.worker import run_worker

    return run_worker(Settings.from_env(), burst=args.burst)


def _run(args) -> int:
    from backend.commands.run import run_stack

    return run_stack(Settings.from_env(), args.workers, args.log_dir)


def _demo(args) -> int:
    from backend.commands.demo import run_demo

    return run_demo(args.port, args.workers, args.exit_when_ready)


def _prelabel(args) -> int:
    from backend.commands.prelabel import prelabel

    settings = Settings.from_env()
    configure_logging(settings)
    return prelabel(settings, args.project, missing=not args.all, wait=not args.no_wait)


def _evaluate(args) -> int:
    from backend.commands.evaluate import run_evaluate

    if args.input and not args.config:
        raise LabelingError("--input needs --config (the labeling config the gold labels belong to)")
    settings = Settings.from_env(
        answer_mode=args.mode,
        selection=args.selection,
        selection_k=args.k,
        calibration=args.calibration,
        concurrency=args.concurrency,
        scoring=args.scoring,
    )
    configure_logging(settings)
    _check_llm(settings)
    return run_evaluate(args, settings)


def _quality(args) -> int:
    from backend.commands.quality import run_quality

    settings = Settings.from_env()
    configure_logging(settings)
    return run_quality(settings, args.project, args.json, args.target)


def _check_llm(settings: Settings) -> None:
    """One clean line, before any work, when the LLM server cannot be reached at all."""
    from backend.model.client import unreachable

    reason = unreachable(settings)
    if reason:
        url = redacted(settings.openai_base_url or "https://api.openai.com/v1")
        raise LabelingError(
            f"the LLM server is unreachable at {url} ({reason}): start it, or set OPENAI_BASE_URL "
            "to a running OpenAI-compatible server"
        )


def _fake_llm(args) -> int:
    from backend.devtools.fake_llm.server import serve

    return serve(args)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelingError(f"cannot read {str(path)!r}: {exc.strerror}") from exc


if __name__ == "__main__":
    sys.exit(main())
