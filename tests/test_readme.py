"""The README documents every setting, exactly as `Settings` defines it."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic.fields import FieldInfo

from orchestrator.config import Settings, WorkerSettings

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| Environment variable | Default | Meaning |\n|---|---|---|\n"


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None or value == []:
        return "(none)"
    return f"`{value}`"


def settings_table() -> str:
    """The README's settings table, generated from `Settings.model_fields`."""
    rows = [
        f"| `ORCH_{name.upper()}` | {_default(field)} | {field.description} |\n"
        for name, field in Settings.model_fields.items()
    ]
    return HEADER + "".join(rows)


def test_every_setting_has_a_description() -> None:
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert not missing, f"give these settings a docstring: {missing}"


def test_readme_table_matches_settings() -> None:
    text = README.read_text()
    table = settings_table()
    assert table in text, "README's settings table is out of date; replace it with:\n\n" + table


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    fence = lines.index("```sh")
    assert lines[fence + 1].startswith("make run ")
    assert lines[fence + 2].startswith("make test ")
    assert lines[fence + 3] == "```"


def test_readme_documents_the_worker_variables() -> None:
    text = README.read_text()
    worker_section = text[text.index("## Workers") :]
    for name in WorkerSettings.model_fields:
        if name not in Settings.model_fields:  # ORCH_HOST and ORCH_PORT are the server's own
            assert f"| `ORCH_{name.upper()}` |" in worker_section, name


def test_docs_point_only_inside_the_repository() -> None:
    """A clone has no `../shared`: every relative link and path the docs name is in the repo."""
    root = README.parent
    for doc in [README, *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../" not in text, f"{doc.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(root), f"{doc.name}: {target} is outside the repository"
            assert path.exists(), f"{doc.name}: {target} does not exist"
