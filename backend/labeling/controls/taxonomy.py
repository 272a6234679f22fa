"""Taxonomy: one or more paths through a tree of <Choice> nodes written out in the config.

A path is a list of stored node values from the top level down; the model may name nodes loosely ("Online /
UGC", or just the leaf), and each step is matched against the nodes of its level only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lxml import etree

from backend.labeling.controls.base import Control, Made, Notes
from backend.labeling.controls.values import as_list, is_true, positive_int, unique, unwrap
from backend.labeling.errors import BadExamples, InvalidAnswer, UnsupportedConfig
from backend.labeling.matching import Label, LabelOptions, match_label, normalize

if TYPE_CHECKING:
    from label_studio_sdk.label_interface.control_tags import ControlTag
    from label_studio_sdk.label_interface.interface import LabelInterface
    from label_studio_sdk.label_interface.object_tags import ObjectTag

TAXONOMY_SPLIT = re.compile(r"\s*(?:/|>|\\|::|→)\s*")
Tree = tuple[Any, ...]  # ((value, children), ...) with children in the same form


class TaxonomyControl(Control):
    """A Taxonomy tag: the value is a list of paths, each a list of stored node values."""

    TAG = "Taxonomy"

    @classmethod
    def from_tag(cls, interface: LabelInterface, tag: ControlTag, obj: ObjectTag, where: str) -> Control:
        attr = tag.attr or {}
        if attr.get("apiUrl") or is_true(attr.get("labeling")):
            what = "apiUrl" if attr.get("apiUrl") else 'labeling="true"'
            raise UnsupportedConfig(
                f"{where} has {what}: only a taxonomy written out in the config with "
                f"<Choice> tags, classifying the whole object, is supported"
            )
        tree, labels = _taxonomy(interface, tag.name or "")
        if not tree:
            raise UnsupportedConfig(f"{where} has no <Choice> nodes")
        most = positive_int(attr.get("maxUsages"), where, "maxUsages")
        return cls(
            **cls.common(interface, tag, obj),
            labels=labels,
            tree=tree,
            multiple=most != 1,
            max_submissions=most,
            leafs_only=is_true(attr.get("leafsOnly")),
        )

    def describe(self) -> str:
        if self.multiple:
            many = f"up to {self.max_submissions} paths" if self.max_submissions else "one or more paths"
        else:
            many = "exactly one path"
        end = ", each ending at a leaf" if self.leafs_only else ""
        lines = [
            f"Field {self.name!r}: {many} through this tree{end}, each a list of node names from the top level down:"
        ]
        lines.extend(_tree_lines(self.tree, self._by_value(), depth=1))
        return "\n".join(lines)

    def schema(self) -> dict[str, Any]:
        path = {"type": "array", "items": {"type": "string", "enum": list(self.label_values)}, "minItems": 1}
        schema: dict[str, Any] = {"type": "array", "items": path, "minItems": 1}
        most = self.max_submissions if self.multiple else 1
        if most:
            schema["maxItems"] = most
        return schema

    def read(self, values: list[dict[str, Any]], text: str, where: str) -> list[list[str]] | None:
        paths = [p for v in values for p in as_list(v.get("taxonomy"))]
        if not paths:
            return None
        for path in paths:
            if not isinstance(path, list) or _walk(self.tree, path) is None:
                raise BadExamples(f"{where}: path {path!r} is not in the config's taxonomy")
        return [list(p) for p in unique(tuple(p) for p in paths)]

    def check(self, value: Any, text: str) -> tuple[list[list[str]], Notes]:
        value = unwrap(value, ("taxonomy", "paths", "path", self.name))
        if value is None or value == [] or isinstance(value, str) and not value.strip():
            raise InvalidAnswer("empty", f"no taxonomy path for {self.name!r}")
        labels = self._by_value()
        candidates: list[Any]
        if isinstance(value, str):
            candidates = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            # ["A", "B"] is one path when it walks the tree, else several one-string paths.
            single = _resolve_path(self.tree, value, labels)
            candidates = [value] if single is not None else list(value)
        elif isinstance(value, list):
            candidates = value
        else:
            raise InvalidAnswer("malformed", f"{self.name!r} must be a list of paths, got {type(value).__name__}")
        paths = [self._path(candidate, labels) for candidate in candidates]
        paths = [list(p) for p in unique(tuple(p) for p in paths)]
        most = self.max_submissions if self.multiple else 1
        if most and len(paths) > most:
            raise InvalidAnswer("malformed", f"{len(paths)} paths for {self.name!r}, which allows {most}")
        return paths, {}

    def _path(self, candidate: Any, labels: dict[str, Label]) -> list[str]:
        """The stored path one candidate of an answer names; InvalidAnswer when it names none."""
        if isinstance(candidate, str):
            path = _resolve_path(self.tree, [s for s in TAXONOMY_SPLIT.split(candidate.strip()) if s], labels)
            if path is None:
                path = _resolve_leaf(self.tree, candidate, labels)
        elif isinstance(candidate, list) and candidate and all(isinstance(s, str) for s in candidate):
            path = _resolve_path(self.tree, candidate, labels)
        else:
            raise InvalidAnswer("malformed", f"a taxonomy path is a list of node names, got {str(candidate)[:80]}")
        if path is None:
            raise InvalidAnswer("out_of_set", f"{str(candidate)[:80]} is not a path of the {self.name!r} taxonomy")
        if self.leafs_only and _walk(self.tree, path):
            raise InvalidAnswer("out_of_set", f"{path!r} does not end at a leaf ({self.name!r} has leafsOnly)")
        return path

    def _by_value(self) -> dict[str, Label]:
        return {label.value: label for label in self.labels}

    def make_regions(self, control: ControlTag, value: Any, text: str) -> Made:
        return [(control.label(to_name=self.to_name, taxonomy=value), {})]


def _taxonomy(interface: LabelInterface, name: str) -> tuple[Tree, tuple[Label, ...]]:
    """The tree of a Taxonomy tag's <Choice> nodes and its labels (one per stored value, first wins)."""
    root = _xml_tree(interface)
    element = next((e for e in root.iter("Taxonomy") if e.get("name") == name), None)
    labels: dict[str, Label] = {}

    def choices(parent: Any) -> list[Any]:
        found = []
        for child in parent:
            if not isinstance(child.tag, str):  # comments, processing instructions
                continue
            found.extend([child] if child.tag == "Choice" else choices(child))  # through a grouping <View>
        return found

    def nodes(parent: Any) -> Tree:
        found, seen = [], set()
        for child in choices(parent):
            value = child.get("alias") or child.get("value")
            if value is None or value in seen:  # the editor keeps the first of equal siblings only
                continue
            seen.add(value)
            labels.setdefault(value, Label(value=value, name=child.get("value", value), hint=child.get("hint", "")))
            found.append((value, nodes(child)))
        return tuple(found)

    tree = nodes(element) if element is not None else ()
    return tree, tuple(labels.values())


def _xml_tree(interface: LabelInterface) -> Any:
    tree = getattr(interface, "_tree", None)  # the SDK keeps the parsed lxml tree
    if tree is None:
        tree = etree.fromstring(interface.config.encode("utf-8"))
    return tree


def _resolve_path(tree: Tree, steps: list[str], labels: dict[str, Label]) -> list[str] | None:
    """The stored path a list of node names (matched tolerantly, level by level) names, or None."""
    if not steps:
        return None
    path: list[str] = []
    nodes = tree
    for step in steps:
        value = match_label(step, LabelOptions(labels[value] for value, _children in nodes))
        if value is None:
            return None
        path.append(value)
        nodes = next(children for v, children in nodes if v == value)
    return path


def _resolve_leaf(tree: Tree, name: str, labels: dict[str, Label]) -> list[str] | None:
    """The one path that ends at a node of this name (case, space and punctuation aside), or None when
    there is none or there are several."""
    wanted, found = normalize(name), []

    def visit(nodes: Tree, prefix: list[str]) -> None:
        for value, children in nodes:
            if wanted and wanted in (normalize(value), normalize(labels[value].name)):
                found.append(prefix + [value])
            visit(children, prefix + [value])

    visit(tree, [])
    return found[0] if len(found) == 1 else None


def _walk(tree: Tree, path: list[Any]) -> Tree | None:
    """The children of the node a stored path ends at (() for a leaf), or None when it is not in the tree."""
    nodes = tree
    for step in path:
        child = next((children for value, children in nodes if value == step), None)
        if child is None:
            return None
        nodes = child
    return nodes if path else None


def _tree_lines(nodes: Tree, labels: dict[str, Label], depth: int) -> list[str]:
    lines = []
    for value, children in nodes:
        label = labels.get(value)
        described = [
            part
            for part in ((label.name if label and label.name != value else ""), (label.hint if label else ""))
            if part
        ]
        lines.append("  " * depth + f"- {value}" + (f": {' - '.join(described)}" if described else ""))
        lines.extend(_tree_lines(children, labels, depth + 1))
    return lines
