"""Logger names follow the module path, so an operator's filter on a package prefix catches all of it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    ROOT / "jasmin_sfu",
    ROOT / "codecs" / "jasmin_codecs",
    ROOT / "signaling" / "jasmin_signaling",
    ROOT / "metering" / "jasmin_metering",
]
OURS = {"jasmin_sfu", "jasmin_codecs", "jasmin_signaling", "jasmin_metering"}


def _module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_every_module_logger_is_named_after_its_module() -> None:
    """Protects the logger naming rule (docs/deploy.md, Logs): a module's logger is
    ``getLogger(__name__)`` (or the same name spelled out); a hand-typed name that drifts from
    the module path, like the old ``jasmin_sfu.billing`` in shows/billing.py, fails here.
    Loggers of other libraries (``aiohttp.server``) and the root logger are not ours to name."""
    wrong = []
    seen = 0
    for package_dir in PACKAGES:
        for path in sorted(package_dir.rglob("*.py")):
            module = _module_name(path, package_dir)
            for node in ast.walk(ast.parse(path.read_text())):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "getLogger"
                    and node.args
                ):
                    continue
                arg = node.args[0]
                if isinstance(arg, ast.Name) and arg.id == "__name__":
                    seen += 1
                elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value.split(".")[0] in OURS:
                        seen += 1
                        if arg.value != module:
                            wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {arg.value!r} (module {module})")
    assert seen >= 20  # the walk found the loggers
    assert wrong == []
