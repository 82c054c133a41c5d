"""The "did you mean" hint shared by every error about a mistyped name."""

import difflib


def closest_name(name, names):
    """The valid name closest to a mistyped ``name``, or None when none is close."""
    close = difflib.get_close_matches(str(name), list(names), n=1)
    return close[0] if close else None


def did_you_mean(name, names):
    """``" Did you mean 'x'?"`` for the closest valid name, or ``""``."""
    close = closest_name(name, names)
    return f" Did you mean {close!r}?" if close else ""
