"""Expression classes and action units: one fixed order used everywhere (PAPER.md, AffectNet ids 0-7)."""

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
NUM_EXPRESSIONS = len(EXPRESSIONS)

# FACS action units carried by the schema, in this order (label/action_units has one intensity per entry, in [0, 1]).
ACTION_UNITS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 25, 26)
NUM_ACTION_UNITS = len(ACTION_UNITS)

# Other names users and datasets give the same classes (RaFD's file names, common spellings).
_ALIASES = {
    "surprised": "surprise", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
    "angry": "anger", "contemptuous": "contempt", "sadness": "sad", "happiness": "happy",
}


def expression_id(name):
    """Return the class id of an expression name (case-insensitive, RaFD spellings accepted)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in EXPRESSIONS:
        raise ValueError(f"Unknown expression {name!r}; expected one of {', '.join(EXPRESSIONS)}.")
    return EXPRESSIONS.index(key)


def expression_name(index):
    """Return the name of class id `index` (0-7)."""
    index = int(index)
    if not 0 <= index < NUM_EXPRESSIONS:
        raise ValueError(f"Expression id {index} is out of range 0-{NUM_EXPRESSIONS - 1}.")
    return EXPRESSIONS[index]
