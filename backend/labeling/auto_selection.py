"""DEMO_SELECTION=auto: every demonstration while they all fit comfortably in the token budget, else nearest-k.

"Comfortably" means that the prompt with every demonstration and an empty task takes at most the part of the
prompt budget that a task text may not take (1 - Budget.max_text_share: half of it by default), so no task's
prompt ever has to drop a demonstration. Past that, "all" would drop demonstrations for long tasks and pay
for every one of them on every request, while the k most similar carry most of the benefit (Liu et al.,
2021, "What Makes Good In-Context Examples for GPT-3?").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.labeling.budget import REPLY_PRIMING, Budget, TokenCounter
from backend.labeling.prompt import PromptSettings, build_messages
from backend.labeling.selection import SIMILARITY_STRATEGIES, TFIDF, Selection

if TYPE_CHECKING:
    from backend.labeling.examples import Example
    from backend.labeling.spec import LabelingSpec


@dataclass(frozen=True)
class SelectionChoice:
    """The selection in effect for one demonstration set, and why."""

    setting: str  # what was configured: "auto" or an explicit strategy
    selection: Selection  # the strategy in effect (never "auto")
    similarity: str  # what nearest-k / mmr-k compare texts with ("" for the other strategies)
    reason: str

    def summary(self) -> str:
        """One line: the selection in effect, by what similarity, and for auto why."""
        text = self.selection.describe()
        if self.similarity:
            text += f" by {similarity_name(self.similarity)}"
        return text + (f" (auto: {self.reason})" if self.setting == "auto" else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "strategy": self.selection.strategy,
            "k": None if self.selection.strategy == "all" else self.selection.k,
            "similarity": self.similarity or None,
            "reason": self.reason,
        }


def similarity_name(similarity: str) -> str:
    return "TF-IDF" if similarity in ("", TFIDF) else similarity


def comfortable_room(budget: Budget) -> int:
    """Prompt tokens the demonstrations (with the instruction) may take for "all" to stay the choice."""
    return int(budget.prompt_tokens * (1.0 - budget.max_text_share))


def demonstration_tokens(
    spec: LabelingSpec, examples: list[Example], prompt: PromptSettings, counter: TokenCounter, stop_above: int
) -> int:
    """Tokens of the prompt with every demonstration and an empty task; counting stops once past stop_above
    (a project with 100,000 annotations is not counted to the end)."""
    total = REPLY_PRIMING
    for message in build_messages(spec, examples, "", prompt):
        total += counter.message(message)
        if total > stop_above:
            break
    return total


def choose_selection(
    spec: LabelingSpec, examples: list[Example], prompt: PromptSettings, counter: TokenCounter, budget: Budget
) -> SelectionChoice:
    """The selection for these demonstrations: prompt.selection itself unless it is "auto"."""
    requested = prompt.selection
    similarity = prompt.embedding_model or TFIDF
    if requested.strategy != "auto":
        used = similarity if requested.strategy in SIMILARITY_STRATEGIES else ""
        return SelectionChoice(
            requested.strategy,
            requested,
            used,
            f"DEMO_SELECTION (or the project's options) says {requested.describe()}",
        )
    if not examples:
        return SelectionChoice(
            "auto", Selection("all", requested.k), "", "no demonstrations yet: the prompt is zero-shot"
        )
    room = comfortable_room(budget)
    tokens = demonstration_tokens(spec, examples, prompt, counter, room)
    if tokens <= room:
        return SelectionChoice(
            "auto",
            Selection("all", requested.k),
            "",
            f"all {len(examples)} demonstrations fit comfortably: {tokens:,} prompt tokens "
            f"without the task, within {room:,} of the {budget.prompt_tokens:,}-token budget "
            "(the rest is the task text's)",
        )
    return SelectionChoice(
        "auto",
        Selection("nearest-k", requested.k),
        similarity,
        f"{len(examples)} demonstrations take more than {room:,} of the "
        f"{budget.prompt_tokens:,}-token prompt budget (the rest is the task text's): "
        f"nearest-{requested.k} by {similarity_name(similarity)}",
    )
