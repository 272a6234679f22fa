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
