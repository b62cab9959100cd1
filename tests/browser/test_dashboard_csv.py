"""The dashboard's own CSV (format.js) and download names (api.js) in headless Chromium."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.spreadsheet import attachment
from tests.export_checks import hostile_text, read_csv, reference, safe_filename

# The dashboard's modules, loaded as the page loads them; values cross as UTF-16 code units
# so that lone surrogates (which a JS string may hold) reach csvEscape as they are.
EXPORT = """async ([units, numbers]) => {
  const { csvBlob, csvEscape } = await import("/js/format.js");
  const row = [...units.map((u) => String.fromCharCode(...u)), ...numbers];
  const codes = (s) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));
  const file = new Uint8Array(await csvBlob([row, row]).arrayBuffer());
  return { fields: row.map((v) => codes(csvEscape(v))), file: Array.from(file) };
}"""
NAME = """async ([header, fallback]) => {
  const { attachmentName } = await import("/js/api.js");
  return attachmentName(header, fallback);
}"""


def units(text: str) -> list[int]:
    raw = text.encode("utf-16-le", "surrogatepass")
    return list(struct.unpack(f"<{len(raw) // 2}H", raw))


def decode(codes: list[int]) -> str:
    return struct.pack(f"<{len(codes)}H", *codes).decode("utf-16-le", "surrogatepass")


number = st.one_of(
    st.none(),
    st.integers(-(10**9), 10**9),
    st.floats(-1e12, 1e12),
    st.sampled_from([float("nan"), float("inf"), -0.5, -60.0]),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=st.lists(hostile_text(), min_size=1, max_size=6), numbers=st.lists(number))
@example(texts=['=HYPERLINK("http://evil.test","x")', "-1", "\ud800@", "a;=1"], numbers=[-0.5])
def test_dashboard_csv_neutralises_text_and_keeps_numbers(
    static_page: Any, texts: list[str], numbers: list[float | int | None]
) -> None:
    out = static_page.evaluate(EXPORT, [[units(t) for t in texts], numbers])
    fields = [decode(f) for f in out["fields"]]
    expected = [reference(t) for t in texts]  # the server's rule (shared/spreadsheet.py)
    assert fields[: len(texts)] == ['"' + e.replace('"', '""') + '"' for e in expected]
    for field, value in zip(fields[len(texts) :], numbers, strict=True):
        if value is None or not math.isfinite(value):
            assert field == ""
        else:
            assert field.lstrip("-")[:1].isdigit() and float(field) == value  # bare number
    # The downloaded file: BOM, CRLF lines, and the csv module reads the same back.
    table = read_csv(bytes(out["file"]))
    for line in table:
        assert line[: len(texts)] == expected
        assert [float(x) if x else None for x in line[len(texts) :]] == [
            v if v is not None and math.isfinite(v) else None for v in numbers
        ]


@pytest.mark.parametrize(
    "filename",
    ["appraisal-2026Q3-north.csv", "appraisal-2026Q3-华北-一组.xlsx", 'a/"b";c\r\n.csv'],
)
def test_download_takes_the_utf8_name_of_content_disposition(
    static_page: Any, filename: str
) -> None:
    header = attachment(filename)
    assert static_page.evaluate(NAME, [header, "fallback.csv"]) == safe_filename(filename)
    assert static_page.evaluate(NAME, ["attachment", "fallback.csv"]) == "fallback.csv"
