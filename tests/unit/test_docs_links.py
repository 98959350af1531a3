"""The front door and its pages hang together: no relative link in README.md or docs/*.md is
broken (file or #anchor, by GitHub's heading-slug rule), every docs page is one hop from the
README, and the README stays a front door (at most 300 lines)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, cursor:, vscode:...


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code: links there are examples, not links."""
    outside, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            outside.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(outside)


def slugs(text: str) -> set[str]:
    """The anchors GitHub makes for a page's headings: the heading's text (inline code and link
    markup reduced to their text), lower-cased, every character but letters, digits, spaces, `-`
    and `_` dropped, spaces turned into `-`; a repeated slug gets `-1`, `-2`, ..."""
    found: set[str] = set()
    seen: Counter[str] = Counter()
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or heading is None:
            continue
        words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading[1]).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", words.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not EXTERNAL.match(target)]


def broken_links(pages: list[Path]) -> list[str]:
    broken = []
    for page in pages:
        for target in links(page):
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not destination.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and (destination.suffix != ".md" or anchor not in slugs(destination.read_text())):
                broken.append(f"{where} (no heading with that anchor)")
    return broken


def test_every_relative_link_and_anchor_resolves() -> None:
    assert PAGES, "docs/ has no pages"
    assert broken_links([README, *PAGES]) == []


def test_every_docs_page_is_one_hop_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    assert [page.name for page in PAGES if page.resolve() not in linked] == []


def test_the_readme_is_a_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 300


def test_the_slug_rule_is_githubs() -> None:
    # github-slugger's rule (what github.com uses): punctuation dropped, each space a hyphen, repeats numbered.
    page = "# A\n## The simulator's state, `--simulate`\n## Over HTTP: for claude.ai\n## Over HTTP: for claude.ai\n"
    assert slugs(page) == {"a", "the-simulators-state---simulate", "over-http-for-claudeai", "over-http-for-claudeai-1"}
