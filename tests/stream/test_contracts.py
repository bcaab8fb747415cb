"""One frame-name rule: the JSON Schemas, the event parser and the state store agree on it."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladsdin.models.names import FRAME_NAME_PATTERN, LICSAR_FRAME_RE, is_frame_name
from ladsdin.state.store import check_frame
from ladsdin.stream import contracts


def _patterns(node: Any, path: str = "$") -> list[tuple[str, str]]:
    """(JSON path, pattern) of every ``pattern`` in a schema."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "pattern" and isinstance(v, str):
                out.append((path, v))
            else:
                out += _patterns(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _patterns(v, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("name", [contracts.EPOCH_SCHEMA, contracts.ALERT_SCHEMA, contracts.SUMMARY_SCHEMA])
def test_schemas_spell_the_one_frame_pattern(name):
    pats = _patterns(contracts.load_schema(name))
    frame = [p for path, p in pats if path.endswith(".frame")]
    ids = [p for path, p in pats if path.endswith(".id") or path.endswith(".event_id")]
    assert frame, f"{name} has no frame pattern"
    assert all(p == f"^{FRAME_NAME_PATTERN}$" for p in frame), frame
    assert all(p.startswith(f"^{FRAME_NAME_PATTERN}:") for p in ids), ids


_NAMES = st.one_of(
    st.text(alphabet="Aa0_.-{}: /é", min_size=0, max_size=70),
    st.from_regex(FRAME_NAME_PATTERN, fullmatch=True),
    st.sampled_from(["128A_05172_131313", "_x", ".x", "-x", "x" * 64, "x" * 65, "a{b}", "a:b", ""]),
)


@settings(max_examples=400, deadline=None)
@given(_NAMES)
def test_parser_and_store_accept_the_same_frame_names(name):
    try:
        contracts.check_names(name, "A" if not LICSAR_FRAME_RE.fullmatch(name) else name[3], "2022-01-10")
        parser_ok = True
    except contracts.EventError:
        parser_ok = False
    try:
        check_frame(name)
        store_ok = True
    except ValueError:
        store_ok = False
    assert parser_ok == store_ok == is_frame_name(name)


def test_every_licsar_frame_id_is_a_frame_name():
    assert is_frame_name("128A_05172_131313") and not is_frame_name("_128A_05172_131313")
