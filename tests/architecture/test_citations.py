"""Every citation of an API reference in code and docs resolves: `docs/reference/<page>.md §N` names a
page in the repository and a section of it (a heading `## N. ...` or `### N.M ...`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: `docs/reference/marketo-api.md §7.3`, also with the page in backticks, and ranges `§2.3-§2.5`.
CITATION = re.compile(r"docs/reference/([a-z-]+\.md)`? §(\d+(?:\.\d+)*[a-z]?)(?:[-–]§?(\d+(?:\.\d+)*))?")
HEADING = re.compile(r"^#{2,4} §?(\d+(?:\.\d+)*[a-z]?)[. ]", re.MULTILINE)


def sections(page: Path) -> set[str]:
    return set(HEADING.findall(page.read_text(encoding="utf-8")))


def citations(text: str) -> list[tuple[str, str]]:
    """(page, section) of each citation; a range cites both ends."""
    out: list[tuple[str, str]] = []
    for page, first, last in CITATION.findall(text):
        out.append((page, first.rstrip(".")))
        if last:
            out.append((page, last.rstrip(".")))
    return out


def test_the_citation_pattern_reads_plain_backticked_and_ranged_citations() -> None:
    text = "see docs/reference/marketo-api.md §7.3. and `docs/reference/streaming.md` §5, docs/reference/x.md §2.3-§2.5"
    assert citations(text) == [("marketo-api.md", "7.3"), ("streaming.md", "5"), ("x.md", "2.3"), ("x.md", "2.5")]
    assert sections_of_text("## 7. Custom activities\n### 7.3 Limits\n#### §5a Peers\n") == {"7", "7.3", "5a"}


def sections_of_text(text: str) -> set[str]:
    return set(HEADING.findall(text))


def test_every_cited_reference_section_exists() -> None:
    files = subprocess.run(["git", "ls-files", "libs", "services", "apps", "tests", "docs", "deploy", "README.md",
                            "CONTRIBUTING.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    known: dict[str, set[str]] = {}
    missing: list[str] = []
    checked = 0
    for name in files:
        path = ROOT / name
        if name.startswith("docs/reference/") or path == Path(__file__).resolve() or path.suffix not in {".py", ".md", ".yaml", ".yml"} \
                or not path.is_file():
            continue
        for page, section in citations(path.read_text(encoding="utf-8", errors="replace")):
            checked += 1
            target = ROOT / "docs" / "reference" / page
            if not target.is_file():
                missing.append(f"{name}: docs/reference/{page} does not exist")
                continue
            if section not in known.setdefault(page, sections(target)):
                missing.append(f"{name}: docs/reference/{page} has no section §{section}")
    assert checked > 100, f"only {checked} citations found: the pattern no longer matches how code cites"
    assert not missing, "citations that do not resolve:\n" + "\n".join(sorted(set(missing)))
