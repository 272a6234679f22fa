"""Errors of the pure labeling core; each message says what was wrong and how to fix it."""


class LabelingError(Exception):
    """Base class of every error the labeling core raises on bad input."""


class UnsupportedConfig(LabelingError):
    """The labeling config asks for something the labeler cannot serve."""


class MissingText(LabelingError):
    """A task has no usable text under the config's data key."""


class BadExamples(LabelingError):
    """A seed file or an annotation cannot be read as demonstrations."""


class BadTemplate(LabelingError):
    """The demonstration template lacks a placeholder or has one it cannot fill."""


class InvalidAnswer(Exception):
    """The answer yields no label from the set; `kind` is malformed, out_of_set or empty.

    Not a LabelingError: a bad model answer is data about one task (its outcome's error kind), not bad input.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
