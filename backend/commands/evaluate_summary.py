"""What `evaluate` prints for a structured config: all controls exact, then each control's figures (per-label
span F1 for spans), the baseline's beside them, the cost, and where the reports went."""

from __future__ import annotations


def print_structured(result: dict, meta: dict, paths: dict) -> None:
    for line in structured_lines(result, meta, paths):
        print(line)


def structured_lines(result: dict, meta: dict, paths: dict) -> list[str]:
    base = result.get("baseline") or {}
    lines = [
        f"{meta['tasks']} tasks, {meta['folds']}-fold cross-validation; failed {meta['failed']}",
        f"tasks with every control right {num(result['exact_match']['all'])} (baseline {num(base.get('exact_match'))})",
    ]
    for name, summary in result["controls"].items():
        lines.extend(control_lines(name, summary))
    cost = "unknown" if meta["cost_usd"] is None else f"${meta['cost_usd']:.4f}"
    lines.append(
        f"requests {meta['requests']}  prompt tokens {meta['prompt_tokens']}  completion tokens "
        f"{meta['completion_tokens']}  estimated cost {cost}  seconds {meta['seconds']}"
    )
    lines.append("reports: " + "  ".join(str(p) for p in paths.values()))
    return lines


def control_lines(name: str, summary: dict) -> list[str]:
    """One control: its headline figures against the baseline; spans add a line per label."""
    tag, base = summary["tag"], summary.get("baseline") or {}
    head = f"{name} ({tag}, {summary['n']} tasks): exactly right {num(summary['exact_match'])}"
    if tag == "Labels":
        exact, overlap = summary["exact"], summary["overlap"]
        lines = [
            f"{head}  span P {num(exact['precision'])} R {num(exact['recall'])} F1 {num(exact['f1'])}  "
            f"overlap F1 {num(overlap['f1'])}  macro-F1 {num(exact['macro_f1'])}  "
            f"(baseline span F1 {num((base.get('exact') or {}).get('f1'))})"
        ]
        for label, row in exact["per_label"].items():
            lines.append(
                f"  {label}: P {num(row['precision'])} R {num(row['recall'])} F1 {num(row['f1'])}  "
                f"overlap F1 {num(overlap['per_label'][label]['f1'])}  support {row['support']}  "
                f"predicted {row['predicted']}"
            )
        return lines
    if tag == "Choices":
        return [
            f"{head}  accuracy {num(summary['accuracy']['all'])}  macro-F1 {num(summary['macro_f1'])}  "
            f"(baseline accuracy {num((base.get('accuracy') or {}).get('all'))})"
        ]
    if tag == "TextArea":
        return [f"{head}  token F1 {num(summary['token_f1'])}  (baseline {num(base.get('token_f1'))})"]
    if tag == "Taxonomy":
        return [
            f"{head}  path F1 {num(summary['path']['f1'])}  node F1 {num(summary['node']['f1'])}  "
            f"(baseline path F1 {num((base.get('path') or {}).get('f1'))})"
        ]
    return [f"{head}  MAE {num(summary['mae'])}  (baseline MAE {num(base.get('mae'))})"]


def num(value) -> str:
    """A figure with three decimals, "n/a" when missing."""
    return "n/a" if value is None else f"{value:.3f}"
