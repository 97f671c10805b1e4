"""The docs hold together: every relative link and #anchor resolves, and the settings reference is cdk.json's.

Offline and fast (text only). Anchors follow GitHub's heading slugs: lower case, every character that is not
a letter, digit, space, hyphen or underscore dropped, spaces made hyphens, and a repeated slug numbered -1, -2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_PAGE = ROOT / "docs" / "stacks.md"
# One page per area; README.md's map links each.
AREAS = ("local-mode", "training", "scale", "serving", "own-code", "stacks", "releases", "tracking")
AREAS += ("ops", "benchmarks", "contributing")
SETTINGS_HEADING = "## Settings reference"

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = LINK.sub(r"\1", heading)  # a link in a heading anchors by its text
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the page's headings, repeated slugs numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(page.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code (fenced blocks and code spans)."""
    found = []
    for number, line in prose_lines(page.read_text()):
        line = CODE_SPAN.sub("code", line)
        found.extend((number, m.group(2)) for m in LINK.finditer(line))
    return found


def test_the_pages_exist_and_the_readme_is_a_front_door():
    names = {p.name for p in PAGES}
    for area in AREAS:
        assert f"{area}.md" in names, f"docs/{area}.md is missing"
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200, "README.md is the front door: keep it under ~200 lines"
    linked = {target.split("#")[0] for _, target in links(ROOT / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in linked]
    assert not unlinked, f"README.md's map does not link {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path):
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: ({target})"
        if not resolved.exists():
            broken.append(f"{where} no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{where} no heading with that anchor in {resolved.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_slugs_follow_github():
    assert slug("Training: `python -m jax_llm train`") == "training-python--m-jax_llm-train"
    assert (
        slug("Local mode: SageMaker's jobs on this machine") == "local-mode-sagemakers-jobs-on-this-machine"
    )
    assert slug("Image build (`bench/image_build.py`)") == "image-build-benchimage_buildpy"


def settings_rows() -> dict[str, str]:
    """key -> default cell of every row of the settings reference's tables."""
    text = SETTINGS_PAGE.read_text()
    assert SETTINGS_HEADING in text, f"{SETTINGS_PAGE.name} has no '{SETTINGS_HEADING}' section"
    section = text.split(SETTINGS_HEADING, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \| `(.*?)` \|", line)
        if match:
            key = match.group(1)
            assert key not in rows, f"{key} is in the settings reference twice"
            rows[key] = match.group(2)
    return rows


def shown_value(cell: str) -> object:
    """A default as the reference shows it: JSON where it parses (numbers, booleans, lists, objects, ""),
    else the bare string."""
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell


def test_every_cdk_json_key_is_in_the_settings_reference_with_its_default():
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    settings = {k: v for k, v in context.items() if not k.startswith("@")}
    rows = settings_rows()
    missing = sorted(set(settings) - set(rows))
    assert not missing, f"docs/stacks.md's settings reference lacks {missing}"
    stale = sorted(set(rows) - set(settings))
    assert not stale, f"docs/stacks.md's settings reference lists keys cdk.json does not have: {stale}"
    wrong = {k: (rows[k], v) for k, v in settings.items() if shown_value(rows[k]) != v}
    assert not wrong, f"defaults in the reference differ from cdk.json (shown, cdk.json): {wrong}"
    if any(k.startswith("@aws-cdk") for k in context):
        assert "`@aws-cdk`" in SETTINGS_PAGE.read_text().split(SETTINGS_HEADING, 1)[1], (
            "the settings reference must say what cdk.json's @aws-cdk feature flags are"
        )


def test_the_readme_names_the_node_releases_the_makefile_requires():
    makefile = (ROOT / "Makefile").read_text()
    supported = re.search(r"^NODE_SUPPORTED := (.+)$", makefile, re.M).group(1).split()
    readme = (ROOT / "README.md").read_text()
    named = re.search(r"Node\.js (\d+) or (\d+)", readme)
    assert named, "README.md does not say which Node.js releases it needs"
    assert [named.group(1), named.group(2)] == [supported[0], supported[-1]]
