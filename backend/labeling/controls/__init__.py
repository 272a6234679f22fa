"""Control tags the labeler can answer, one class per kind; labeling/parser.py turns a config into them."""

from .base import Control, Notes
from .choices import ChoicesControl
from .labels import LabelsControl
from .numeric import NumberControl, RatingControl
from .taxonomy import TaxonomyControl
from .textarea import TextAreaControl

# In the order the supported list names them.
KINDS: tuple[type[Control], ...] = (ChoicesControl, LabelsControl, TextAreaControl, TaxonomyControl, RatingControl,
                                    NumberControl)

__all__ = ["KINDS", "ChoicesControl", "Control", "LabelsControl", "Notes", "NumberControl", "RatingControl",
           "TaxonomyControl", "TextAreaControl"]
