"""CPTuning's handcrafted infilling template.

The relation goes into a sentinel slot of a natural-language pattern and the
target is the verbalized relation in sentinel form (``<extra_id_0> person
place of birth <extra_id_1>``), as in GenPT, CPTuning's closest public
ancestor. The default pattern states the two entities with their types when
the data has types. With T5 the sentinels are vocabulary tokens; with the
default MiniLM encoder-decoder the backbone loader adds them as special tokens
(``special_tokens``), so both work unchanged.
"""
from __future__ import annotations

from relforge.templates import InfillTemplate


class CPTuningTemplate(InfillTemplate):
    """``{text} The relation between {head} ({head_type}) and {tail} ({tail_type}) is <extra_id_0> .``"""

    name = "infill"

    class Settings(InfillTemplate.Settings):
        with_types: bool = True
