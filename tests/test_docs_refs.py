"""Every module or file the docs and docstrings name exists.

Modules move (`prewarm.manifest` became `prewarm.plan.manifest`, `prewarm/adapters/`
`prewarm/farm/adapters/`) and the sentences naming them stay behind, sending the next
reader to a file that is not there. This reads the package's sources, docs/ and the
README for dotted names (`prewarm.plan.manifest`, or a name in a module:
`prewarm.plan.manifest.parse_manifest`) and paths in the repository
(`prewarm/site/guard.py`, `docs/warm.md`, `bench/scale.py`, and inside the package
`site/guard.py` or `flow/warming.check_plan`), and fails naming each one
that does not resolve, with its file and line.

Not references, so passed over: names that are strings of their own (a Celery task or
queue, `"prewarm.warm_batch"`, a format id `prewarm.profile/1`, a queue `prewarm.gw-a`, a name after
the word queue),
placeholders in capitals (`prewarm.NAME`, `bench/NAME.py`, `prewarm/x.<abi>.so`), and
`bench/out/` (what the benches write).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOTTED = re.compile(r"(?<![\w./-])prewarm(?:\.[A-Za-z_]\w*)+(?![\w/-])")
PATH = re.compile(r"(?<![\w./-])(?:prewarm|docs|bench|tests|scripts|workers|hooks|sample_jobs)/[\w./-]*\w")
# Inside the package the README and docs name modules by their layer: `site/guard.py`, `flow/warming.check_plan`.
LAYER_PATH = re.compile(r"(?<![\w./-])(?:plan|site|warm|traces|formats|state|report|flow|farm|twin|testkit|cli)/[\w/.]*\w")


def _sources() -> list[Path]:
    return [*sorted(ROOT.glob("prewarm/**/*.py")), *sorted(ROOT.glob("docs/**/*.md")), ROOT / "README.md"]


def _module(parts: list[str]) -> Path | None:
    p = ROOT.joinpath(*parts)
    return next((c for c in (p.with_suffix(".py"), p / "__init__.py") if c.exists()), None)


def _defines(source: Path, name: str) -> bool:
    if name.startswith("__") and name.endswith("__"):
        return True
    return re.search(rf"^\s*(?:async def|def|class)\s+{name}\b|^\s*{name}\s*[:=]|^\s*(?:from|import) .*\b{name}\b",
                     source.read_text(), re.M) is not None


def _resolves(name: str) -> bool:
    """A module, or a name (a function, class, constant, or one attribute of it) defined in one."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        module = _module(parts[:k])
        if module is not None:
            rest = parts[k:]
            return not rest or (len(rest) <= 2 and _defines(module, rest[0]))
    return False


def _in_package(name: str) -> bool:
    if (ROOT / "prewarm" / name).exists():
        return True
    module, _, attr = name.partition(".")
    return bool(attr) and attr != "py" and _resolves(".".join(["prewarm", *module.split("/"), attr]))


def _placeholder(text: str, start: int, end: int, name: str) -> bool:
    parts = re.split(r"[./]", name)
    quoted = text[start - 1:start] in "\"'" and text[end:end + 1] == text[start - 1:start]
    queue = re.search(r"queues? `?$", text[max(0, start - 8):start]) is not None
    return (any(p.isupper() for p in parts) or quoted or queue or text[end:end + 2] == ".<"
            or name.startswith("bench/out"))


def stale_references() -> list[str]:
    out = []
    for source in _sources():
        text = source.read_text()
        for pattern, exists in ((DOTTED, _resolves), (PATH, lambda s: (ROOT / s).exists()), (LAYER_PATH, _in_package)):
            for m in pattern.finditer(text):
                name = m.group(0).rstrip(".")
                if not _placeholder(text, m.start(), m.start() + len(name), name) and not exists(name):
                    line = text.count("\n", 0, m.start()) + 1
                    out.append(f"{source.relative_to(ROOT)}:{line}: {name}")
    return out


def test_every_module_and_file_named_in_docs_and_docstrings_exists():
    assert stale_references() == []


def test_the_scan_finds_what_it_should():
    """The check itself: a moved module, a moved file and a missing name are caught, a real one is not."""
    assert _resolves("prewarm.plan.manifest") and _resolves("prewarm.plan.manifest.parse_manifest")
    assert _resolves("prewarm.site.guard.Guard")
    assert not _resolves("prewarm.manifest") and not _resolves("prewarm.plan.manifest.no_such_name")
    text = "see prewarm.commands, prewarm/adapters/ and `prewarm.NAME` or \"prewarm.warm_batch\""
    found = [m.group(0) for p in (DOTTED, PATH) for m in p.finditer(text)
             if not _placeholder(text, m.start(), m.end(), m.group(0))]
    assert found == ["prewarm.commands", "prewarm/adapters"]
    assert _in_package("site/guard.py") and _in_package("flow/warming.check_plan") and _in_package("flow/adapters")
    assert not _in_package("adapters/openjd.py") and not _in_package("flow/warming.no_such_name")
