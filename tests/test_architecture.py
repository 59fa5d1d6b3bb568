"""The package map, enforced: imports point export -> train -> models -> gifsent_infer, the
runtime never imports torch, and no module uses another module's `_private` names.

Imports are read with `ast` from the source of every module of the four packages, so an
import inside a function (which `import gifsent_export` never executes) counts the same as
one at the top. tests/, scripts/ and benchmarks/ sit above every package and are not
checked: tests may reach private test hooks on purpose.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# folder -> import name, lowest layer first: a package may import only itself and those before it
PACKAGES = {
    "gifsent_infer": "gifsent_infer",
    "models": "gifsent_models",
    "train": "gifsent_train",
    "export": "gifsent_export",
}
RANK = {name: i for i, name in enumerate(PACKAGES.values())}
RUNTIME_FORBIDDEN = ("torch", "torchvision")  # gifsent_infer installs and runs without them

# Private names used across modules in files other engineers are rewriting right now; each
# entry is an expected failure that must disappear (strict: fixing one fails the test until
# its entry is removed here).
KNOWN_PRIVATE_USES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Use:
    importer: str  # dotted module name
    file: str  # path relative to the repository
    line: int
    target: str  # dotted name imported (module, or module.name)

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.importer} imports {self.target}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1][: -len(".py")]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[_module_name(path)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return name in MODULES and MODULES[name].name == "__init__.py"


def _uses(name: str, path: Path) -> list[Use]:
    """Every import in the module (at any depth), as dotted targets; `from m import x` gives
    `m.x`. Also `alias._name` where alias is a first-party module bound by an import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    package = name if _is_package(name) else name.rpartition(".")[0]
    uses: list[Use] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                uses.append(Use(name, rel, node.lineno, a.name))
                if a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                uses.append(Use(name, rel, node.lineno, f"{base}.{a.name}"))
                if f"{base}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            uses.append(Use(name, rel, node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
    return uses


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _private_owner(target: str) -> str | None:
    """The module or package a private target belongs to, or None when nothing is private."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return ".".join(parts[:i])
    return None


def _all_uses() -> list[Use]:
    return [u for name, path in MODULES.items() for u in _uses(name, path)]


USES = _all_uses()


def _private_violations() -> dict[tuple[str, str], Use]:
    out = {}
    for u in USES:
        owner = _private_owner(u.target)
        if owner is None or owner.split(".")[0] not in RANK:
            continue  # public, or a third-party library's business
        if u.importer == owner or u.importer.startswith(owner + "."):
            continue  # a module's own (or its package's own) private names
        out[(u.importer, u.target)] = u
    return out


def test_every_package_module_is_read():
    # guards the guard: a moved folder must not silently empty the check
    for pkg in PACKAGES.values():
        assert pkg in MODULES, pkg
    assert "gifsent_train.run" in MODULES and "gifsent_models.onnx" in MODULES
    assert len(USES) > 100


def test_imports_point_one_way():
    bad = [
        f"{u} ({u.importer.split('.')[0]} may import only {list(RANK)[: RANK[u.importer.split('.')[0]] + 1]})"
        for u in USES
        if u.target.split(".")[0] in RANK
        and RANK[u.target.split(".")[0]] > RANK[u.importer.split(".")[0]]
    ]
    assert not bad, "imports against export -> train -> models -> gifsent_infer:\n" + "\n".join(bad)


def test_runtime_never_imports_torch():
    bad = [
        str(u)
        for u in USES
        if u.importer.startswith("gifsent_infer") and u.target.split(".")[0] in RUNTIME_FORBIDDEN
    ]
    assert not bad, "gifsent_infer must run without torch:\n" + "\n".join(bad)


def test_no_module_uses_another_modules_private_names():
    bad = [str(u) for key, u in _private_violations().items() if key not in KNOWN_PRIVATE_USES]
    assert not bad, (
        "private names used from another module (make them public where they belong, "
        "or move the code):\n" + "\n".join(bad)
    )


def test_known_private_uses_are_still_there():
    """Every exception listed in KNOWN_PRIVATE_USES still exists: a fixed one must be removed
    from the list, so the list never hides a new use behind an old entry."""
    gone = [k for k in KNOWN_PRIVATE_USES if k not in _private_violations()]
    assert not gone, f"fixed; remove from KNOWN_PRIVATE_USES: {gone}"


def test_the_checker_sees_what_it_must(tmp_path):
    # a function-level upward import and a private import, in a throwaway module
    src = tmp_path / "m.py"
    src.write_text(
        "import os\n"
        "from gifsent_infer.writing import outputs as out\n"
        "def f():\n"
        "    from gifsent_export.api import export_checkpoint\n"
        "    from gifsent_infer.files import _reserve_temp\n"
        "    return out._fsync_dir\n"
    )
    targets = {u.target for u in _uses("gifsent_models.m", src)}
    assert {
        "gifsent_export.api.export_checkpoint",
        "gifsent_infer.files._reserve_temp",
        "gifsent_infer.writing.outputs._fsync_dir",
    } <= targets
    assert _private_owner("gifsent_infer.files._reserve_temp") == "gifsent_infer.files"
    assert _private_owner("gifsent_infer.files.write_json") is None


# The runtime's own rooms, lowest first: a module may import its own room and those before
# it. "" is the package's base (errors, files, paths, contract, version, options), which
# every room may use. Reading and running never import writing, views, scale-out or the
# service; the CLI sits on top of everything.
RUNTIME_ROOMS = ("", "reading", "running", "writing", "scaleout", "views", "serve", "cli")
ROOM_RANK = {room: i for i, room in enumerate(RUNTIME_ROOMS)}

# Import circles between modules of one package that are being taken apart right now; each
# entry is an expected failure that must disappear (a fixed one fails
# test_known_circles_are_still_there until its entry is removed here).
KNOWN_CIRCLES: set[frozenset[str]] = set()


def _room(module: str) -> str | None:
    """The room of a gifsent_infer module ("" for the base), None outside the runtime."""
    parts = module.split(".")
    if parts[0] != "gifsent_infer":
        return None
    if len(parts) >= 2 and parts[1] in ROOM_RANK:
        return parts[1]
    return ""


def _target_module(target: str) -> str:
    """The first-party module an import target names (`m.x` -> `m` when x is not a module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def test_every_runtime_module_is_in_a_room():
    base = sorted(m for m in MODULES if _room(m) == "" and m.count(".") == 1 and not _is_package(m))
    assert base == [
        f"gifsent_infer.{n}"
        for n in sorted(("contract", "errors", "files", "options", "paths", "version"))
        if f"gifsent_infer.{n}" in MODULES
    ], f"a new module belongs in one of the rooms {RUNTIME_ROOMS[1:]}, not beside them: {base}"


def test_runtime_rooms_import_downwards():
    bad = []
    for u in USES:
        mine, target = _room(u.importer), _room(_target_module(u.target))
        if mine is None or target is None or u.importer == "gifsent_infer":
            continue  # outside the runtime, or the package's lazy public re-exports
        if ROOM_RANK[target] > ROOM_RANK[mine]:
            bad.append(f"{u} ({mine or 'base'} may not import {target})")
    assert not bad, "runtime rooms import only their own and lower rooms:\n" + "\n".join(bad)


# Lazy imports that register plug-ins are no dependency: the registry imports its encoder
# modules (inside a function) only so that their define_encoder calls run.
PLUGIN_LOADERS = {"gifsent_models.registry": "gifsent_models.encoders."}


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for u in USES:
        target = _target_module(u.target)
        plugins = PLUGIN_LOADERS.get(u.importer)
        if plugins and target.startswith(plugins):
            continue
        if target and target != u.importer and not _is_package(target):
            graph[u.importer].add(target)
    return graph


def _circles() -> set[frozenset[str]]:
    """Pairs of modules that reach each other through imports (any depth; a package's
    __init__ is skipped, since importing a package for its lazy re-exports is no dependency)."""
    graph = _module_graph()
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    return {
        frozenset({a, b})
        for a in graph
        for b in reach[a]
        if a < b and a in reach.get(b, ()) and a.split(".")[0] == b.split(".")[0]
    }


def test_no_import_circles_inside_a_package():
    bad = sorted(" <-> ".join(sorted(c)) for c in _circles() - KNOWN_CIRCLES)
    assert not bad, "modules that import each other (move the shared part down):\n" + "\n".join(bad)


def test_known_circles_are_still_there():
    gone = [sorted(c) for c in KNOWN_CIRCLES if c not in _circles()]
    assert not gone, f"fixed; remove from KNOWN_CIRCLES: {gone}"


def test_no_module_imports_names_back_from_its_own_package_init():
    bad = [
        str(u)
        for u in USES
        if "." in u.importer
        and not _is_package(u.importer)
        and _target_module(u.target) == u.importer.split(".")[0]
        and u.target != u.importer.split(".")[0]
        and _target_module(u.target) != u.target  # `from pkg import submodule` is fine
    ]
    assert not bad, (
        "names imported back from the package's __init__ (an import circle):\n" + "\n".join(bad)
    )
