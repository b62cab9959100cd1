"""Scoring's HTTP layer (api/, the appraisal routes and appraiser) holds no SQL: queries do."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SCORING = Path(__file__).resolve().parents[2] / "services" / "scoring"
HTTP_MODULES = sorted(
    [
        *(SCORING / "api").glob("*.py"),
        *(SCORING / "appraisal").glob("*routes.py"),
        SCORING / "appraisal" / "inputs.py",
        SCORING / "appraisal" / "appraiser.py",
        SCORING / "app.py",
    ]
)
# A statement starts a string: "DELETE" alone (an HTTP method) is not one, "DELETE FROM" is.
SQL = re.compile(
    r"^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s)"
)


def sql_strings(source: str) -> list[str]:
    """String constants (f-string parts included) that begin like an SQL statement."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
    ]


def test_the_check_sees_sql() -> None:
    assert sql_strings('Q = """\n    SELECT id FROM teams WHERE id = $1\n"""') != []
    assert sql_strings('F = f"DELETE FROM {table} WHERE id = $1"') != []
    assert sql_strings('M = ("DELETE", "GET")') == []


@pytest.mark.parametrize("path", HTTP_MODULES, ids=lambda p: str(p.relative_to(SCORING)))
def test_http_module_has_no_sql(path: Path) -> None:
    assert sql_strings(path.read_text(encoding="utf-8")) == []
