"""The `fewshot-prelabel` command: label files, serve the backend, run workers, start the fake LLM."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .labeling.errors import LabelingError
from .settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except (LabelingError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot-prelabel", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    label = commands.add_parser("label", help="label a JSONL file of tasks with few-shot prompts")
    label.add_argument("--config", required=True, type=Path, help="Label Studio labeling config (XML file)")
    label.add_argument("--seeds", action="append", default=[], type=Path,
                       help="seed examples: JSONL {text,label} or a Label Studio JSON export (repeatable)")
    label.add_argument("--input", required=True, type=Path, help="JSONL rows: {\"text\": ...} or task JSON")
    label.add_argument("--output", required=True, type=Path, help="JSONL output; re-running resumes")
    label.add_argument("--concurrency", type=int, help="requests in flight (default LABEL_CONCURRENCY)")
    label.add_argument("--mode", choices=("json", "logprobs", "text"), help="answer mode (default LLM_ANSWER_MODE)")
    label.add_argument("--model", help="model name (default LLM_MODEL)")
    label.add_argument("--template", help="demonstration template (default PROMPT_TEMPLATE)")
    label.add_argument("--no-progress", action="store_true", help="no progress bar")
    label.add_argument("--summary-json", type=Path, help="also write the run summary as JSON here")
    label.set_defaults(handler=_label)

    fake = commands.add_parser("fake-llm", help="start the FAKE OpenAI-compatible stand-in server (tests, demos)",
                               add_help=False)
    fake.add_argument("rest", nargs=argparse.REMAINDER)
    fake.set_defaults(handler=_fake_llm)
    return parser


def _label(args) -> int:
    from .filelabel import label_file
    from .labeler import Labeler, prompt_settings
    from .labeling.examples import load_seeds
    from .labeling.spec import parse_spec
    from .llm import LLMClient

    settings = Settings.from_env(model=args.model, answer_mode=args.mode, template=args.template,
                                 concurrency=args.concurrency)
    _logging(settings)
    spec = parse_spec(_read(args.config))
    examples = load_seeds(args.seeds + [Path(p) for p in settings.seed_paths], spec)
    client = LLMClient(settings)
    labeler = Labeler(spec, examples, settings, client, prompt_settings(settings))
    print(f"labeling {args.input} with {len(labeler.examples)} demonstrations, model {settings.model}, "
          f"mode {labeler.prompt.mode}, model_version {labeler.model_version}", file=sys.stderr)
    summary = label_file(labeler, args.input, args.output, settings.concurrency, progress=not args.no_progress)
    for line in summary.lines():
        print(line)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return 0 if summary.failed == 0 else 1


def _fake_llm(args) -> int:
    from .fake_llm.server import main as fake_main

    return fake_main(args.rest) or 0


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelingError(f"cannot read {str(path)!r}: {exc.strerror}") from exc


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
