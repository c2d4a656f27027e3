"""MkDocs hooks for this site (``hooks:`` in mkdocs.yml).

1. Links from a page to a file of the repository outside ``docs/`` (``../benchmarks/RESULTS.md``,
   ``../CHANGELOG.md``) are written as they work on a checkout or a code host. On the site, each
   file so linked (and every file that those files link to, recursively) is published at its
   repository path (``benchmarks/RESULTS.md``), and the links are rewritten to point there. The
   site therefore shows the benchmark results and recipes themselves, never a copy that could
   drift, and ``mkdocs build --strict`` fails on a link to a file that does not exist.
2. Docstrings written for Sphinx name objects with roles (``:class:`Reranker```) and end the
   paragraph before a literal block with ``::``; mkdocstrings renders both as text, so the role is
   dropped from the rendered reference (the name stays as code) and ``::`` becomes ``:``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s#]+)(#[^)\s]*)?(\))")
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj):(?=<code>)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)

# repository path (posix, relative to the repository root) -> published site path
_published: dict[str, str] = {}


def _root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith(("/", "#"))


def _outside_links(text: str, page_repo_path: str) -> list[str]:
    """Repository paths of the relative links of ``text`` (a page at ``page_repo_path``)."""
    found = []
    for match in _LINK.finditer(_FENCE.sub("", text)):
        target = match.group(2)
        if _is_relative(target):
            found.append(posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), target)))
    return found


def on_files(files: Files, config: Any) -> Files:
    root = _root(config)
    docs = Path(config["docs_dir"]).resolve().relative_to(root).as_posix()
    _published.clear()
    pending = []
    for file in files.documentation_pages():
        repo_path = f"{docs}/{file.src_uri}"
        pending += [path for path in _outside_links(Path(file.abs_src_path).read_text(encoding="utf-8"), repo_path)
                    if not path.startswith(f"{docs}/") and not path.startswith("..")]
    while pending:
        path = pending.pop()
        if path in _published:
            continue
        source = root / path
        if not source.is_file():
            continue  # mkdocs reports the broken link itself (strict: an error)
        if files.get_file_from_path(path) is not None:
            raise ValueError(f"{path} is both a page of docs/ and a repository file linked from the docs")
        _published[path] = path
        files.append(File.generated(config, path, abs_src_path=str(source)))
        if path.endswith(".md"):
            pending += _outside_links(source.read_text(encoding="utf-8"), path)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    docs = Path(config["docs_dir"]).resolve().relative_to(_root(config)).as_posix()
    src_uri = page.file.src_uri
    repo_path = src_uri if src_uri in _published else f"{docs}/{src_uri}"

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(2)
        if not _is_relative(target):
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), target))
        if resolved in _published:
            site_target = posixpath.relpath(_published[resolved], posixpath.dirname(src_uri) or ".")
        elif src_uri in _published and resolved.startswith(f"{docs}/"):
            site_target = posixpath.relpath(resolved[len(docs) + 1:], posixpath.dirname(src_uri) or ".")
        else:
            return match.group(0)
        return f"{match.group(1)}{site_target}{match.group(3) or ''}{match.group(4)}"

    # Code blocks are kept as they are; links are rewritten between them.
    pieces, start = [], 0
    for fence in _FENCE.finditer(markdown):
        pieces += [_LINK.sub(rewrite, markdown[start:fence.start()]), fence.group(0)]
        start = fence.end()
    return "".join([*pieces, _LINK.sub(rewrite, markdown[start:])])


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    return _ROLE.sub("", html).replace("::</p>", ":</p>")
