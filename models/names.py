"""Names the product shares across every layer: frames and LiCSAR frame IDs.

Dependency-free (only ``re``), so the state store and the event parser can use the very same
rule without importing the array stack.
"""
from __future__ import annotations

import re

#: A LiCSAR frame ID, ``TTTP_CCCCC_IIJJKK`` (DESIGN.md §2); P is the track letter.
LICSAR_FRAME_RE = re.compile(r"\d{3}[AD]_\d{5}_\d{6}")
#: Every frame name the product accepts, in one place: the event schemas, the event parser and
#: the state store use it (a test checks that the JSON Schemas spell the same pattern). A LiCSAR
#: frame ID, or any other name of 1-64 characters ``[A-Za-z0-9_.-]`` that starts with a letter or
#: digit (a simulated or cropped frame). The name becomes a directory under the data root and a
#: Redis hash tag, hence no braces, colons, slashes or spaces, and no leading '.', '-' or '_'.
FRAME_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
FRAME_NAME_RE = re.compile(FRAME_NAME_PATTERN)


def is_frame_name(name: object) -> bool:
    """True if ``name`` is a frame name the product accepts (:data:`FRAME_NAME_PATTERN`)."""
    return isinstance(name, str) and FRAME_NAME_RE.fullmatch(name) is not None
