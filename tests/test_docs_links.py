"""Every relative Markdown link in README.md and docs/*.md points to a file (or folder) that exists and, when it
names a heading (`page.md#heading`), to a heading that exists there, with GitHub's anchors."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text):
    """The page without its fenced code blocks and inline code spans, where a bracket is not a link."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "``", line))
    return "\n".join(out)


def anchors(page):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 on repeats."""
    seen, out = {}, set()
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page):
    for m in LINK.finditer(prose(page.read_text())):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        yield target


def broken(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            yield f"{page.relative_to(ROOT)}: {target} (no such file)"
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            yield f"{page.relative_to(ROOT)}: {target} (no heading #{anchor} in {where.relative_to(ROOT)})"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    problems = list(broken(page))
    assert not problems, "broken links (fix: point them at an existing page or heading):\n" + "\n".join(problems)


def test_the_anchor_rule_is_githubs():
    """A spot check of the slug rule on headings whose anchors GitHub is known to give."""
    page = ROOT / "docs" / "protocols.md"
    assert {"comirecs-protocol-comirec", "comirecs-preprocessing---filter-comirec"} <= anchors(page)
