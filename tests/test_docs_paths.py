"""The docs are readable from the repository alone.

Every repository path that README.md or docs/*.md names (in backticks or as a link)
must exist, and no doc may point outside the repository (``../``, the workspace's
shared notes, PRODUCT.md or MONEY_AND_CHAT.md that live elsewhere).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
# Top-level folders and files a path in a doc may start with.
ROOTS = ("jasmin_sfu/", "codecs/", "signaling/", "metering/", "bench/", "tests/", "docs/", ".ci/")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")
OUTSIDE = re.compile(r"\.\./|/work/|(?<![\w/.])PRODUCT\.md|MONEY_AND_CHAT\.md|DESIGN\.md|ANCHORS\.md")


def named_paths(doc: Path) -> set[str]:
    """Repository paths a doc names: relative links, and backticked paths under a known root."""
    text = doc.read_text()
    out = set()
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        out.add(str((doc.parent / target).resolve().relative_to(REPO)))
    for code in CODE.findall(text):
        path = code.split("::")[0].rstrip(".,:;)")
        if path.startswith(ROOTS) and not any(c in path for c in "*{<…"):
            out.add(path)
    return out


def generated(path: str) -> bool:
    """A path git ignores (a build output a doc says how to make, e.g. tests/whip/js/build)."""
    return any(  # as a file, or as a folder (patterns like `build/` match folders only)
        subprocess.run(["git", "check-ignore", "-q", p], cwd=REPO, check=False).returncode == 0
        for p in (path, path + "/")
    )


def test_every_path_a_doc_names_exists() -> None:
    """Protects the reader: a renamed or deleted file leaves no dangling name in README.md or
    docs/*.md (docs/architecture.md's walks name files and would rot first). Git-ignored
    build outputs are allowed: they exist once the documented make target ran."""
    missing = [
        (doc.name, p) for doc in DOCS for p in sorted(named_paths(doc)) if not (REPO / p).exists() and not generated(p)
    ]
    assert missing == []


def test_architecture_names_paths() -> None:
    """Protects the check above from passing vacuously on the doc that needs it most."""
    assert len(named_paths(REPO / "docs" / "architecture.md")) >= 15


def test_no_doc_points_outside_the_repository() -> None:
    """Protects docs/product.md's reason to exist: no citation of notes a reader of the
    repository cannot open."""
    outside = [
        (doc.name, n, line.strip())
        for doc in DOCS
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert outside == []
