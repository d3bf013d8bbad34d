"""What may reach a log line, a status or a stored result from outside: one line, bounded.

Text from a cloud (an error body), a requirer or the CLI's answer is data: a newline in it
could forge a log line (`build ... finished: exit 0`), and megabytes of it would fill a status
or a state file. Image IDs coming back from a cloud are checked here too, once for both sides.
"""

import re
import unicodedata

# Characters of one status or log field; results keep more (the operator reads them in full
# in the build log, where the CLI wrote them).
STATUS_LIMIT = 100
LOG_LIMIT = 500
RESULT_LIMIT = 2000
_CUT = "…"
# An image ID as Glance makes them (UUIDs) or as tests do: a safe word, never an option
# (no leading '-'), never a list (no ','), never more than one argv word or log field.
_IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def one_line(text: str, limit: int = LOG_LIMIT) -> str:
    """Return `text` with each control character (newline, NUL, ESC...) as a space, bounded.

    Longer than `limit` characters: cut, the cut marked with an ellipsis.
    """
    flat = "".join(
        " " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in text
    )
    return flat if len(flat) <= limit else flat[: max(0, limit - len(_CUT))] + _CUT


def check_image_id(image_id: str) -> str:
    """Return the ID; raise ValueError unless it is a safe word of at most 128 characters."""
    if not _IMAGE_ID.fullmatch(image_id):
        raise ValueError(
            f"image ID {one_line(image_id, 40)!r} is not 1-128 letters, digits, '.', '_' or "
            "'-' starting with a letter or digit"
        )
    return image_id


def is_image_id(image_id: str) -> bool:
    """Return whether check_image_id accepts it."""
    return bool(_IMAGE_ID.fullmatch(image_id))
