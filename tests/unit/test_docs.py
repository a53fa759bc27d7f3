"""The README and the pages of docs/ link to one another: every relative link names a file that
exists and, after `#`, a heading that page has (GitHub's anchors), and docs/README.md lists every
page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchor for each heading: lower case, punctuation dropped, spaces to hyphens;
    a repeated one gets -1, -2, ... Lines in code blocks are not headings."""
    found: dict[str, int] = {}
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = re.match(r"^#+ (.+)$", line)
        if in_code or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        count = found.get(slug)
        found[slug] = 0 if count is None else count + 1
        if count is not None:
            found[f"{slug}-{count + 1}"] = 0
    return set(found)


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [
        link
        for link in LINK.findall(text)
        if not re.match(r"^[a-z]+:", link) and not link.startswith("<")
    ]


def test_the_pages_are_found():
    assert len(PAGES) > 5
    assert "the-two-commands" in anchors(REPO / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_leads_to_a_file_and_a_heading_that_exist(page):
    broken = []
    for link in links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no file {target.relative_to(REPO)}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: {target.name} has no heading #{anchor}")
    assert broken == []


def test_the_docs_index_lists_every_page():
    index = (DOCS / "README.md").read_text()
    listed = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    assert listed == {p.name for p in DOCS.glob("*.md")} - {"README.md"}
