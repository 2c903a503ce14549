"""The package's imports follow the layer order of nerf/layers.py and form no circle.

Every import statement of every module is read with `ast` (imports inside functions and under
`if TYPE_CHECKING:` included: a lazy import is still a dependency). The checks are also run on
small synthetic packages, so a broken rule is shown to fail.
"""

import ast
from pathlib import Path

import pytest

from nerf.layers import LAYERS, layer_of, room_of

PACKAGE = Path(__file__).resolve().parents[1] / "nerf"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package folder `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that module `name` (file `path`) imports, resolved to known names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(dotted: str) -> str | None:  # the deepest known module a dotted name lies in
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from a import b`: the submodule a.b when there is one, else the module a
            hits = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else resolve(target)
                    for alias in node.names]
        elif isinstance(node, ast.Import):
            hits = [resolve(alias.name) for alias in node.names]
        else:
            continue
        found.update(h for h in hits if h and h != name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    names = module_names(root)
    known = set(names)
    return {name: imported_modules(name, path, known) for name, path in names.items()}


def upward_imports(graph: dict[str, set[str]], room=room_of, layer=layer_of) -> list[str]:
    """Imports of a room of the same or a higher layer (other than the module's own room)."""
    bad = []
    for module, targets in sorted(graph.items()):
        src = room(module)
        for target in sorted(targets):
            dst = room(target)
            if dst != src and layer(dst) >= layer(src):
                bad.append(f"{module} (layer {layer(src)}, {src}) imports {target} (layer {layer(dst)}, {dst})")
    return bad


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


GRAPH = import_graph(PACKAGE)


def test_every_module_has_a_room():
    unplaced = []
    for module in GRAPH:
        try:
            layer_of(room_of(module))
        except KeyError as exc:
            unplaced.append(str(exc))
    assert not unplaced, "modules missing from nerf.layers.LAYERS:\n" + "\n".join(unplaced)


def test_every_listed_room_exists():
    rooms = {room_of(m) for m in GRAPH}
    listed = {room for layer in LAYERS for room in layer}
    assert listed == rooms, f"listed in LAYERS but absent from the package: {sorted(listed - rooms)}"


def test_no_import_runs_against_the_layer_order():
    bad = upward_imports(GRAPH)
    assert not bad, "imports against nerf/layers.py:\n" + "\n".join(bad)


def test_no_import_circle_between_modules():
    cycles = import_cycles(GRAPH)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


# --- the checks themselves, on synthetic packages --------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "toy"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


TOY_LAYERS = (("toy", "toy.base"), ("toy.low",), ("toy.mid", "toy.side"), ("toy.top",))


def toy_room(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if any(name in layer for layer in TOY_LAYERS):
            return name
    raise KeyError(module)


def toy_layer(room: str) -> int:
    return next(i for i, layer in enumerate(TOY_LAYERS) if room in layer)


def test_an_upward_import_is_caught(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "", "base.py": "",
        "low/__init__.py": "", "low/a.py": "def f():\n    from toy.top.b import g\n",  # lazy, upward
        "mid/__init__.py": "from toy.low import a\n",  # downward: allowed
        "side.py": "from toy import mid\n",  # same layer, other room: refused
        "top/__init__.py": "", "top/b.py": "from ..low.a import f\nimport toy.base\n",
    })
    bad = upward_imports(import_graph(pkg), toy_room, toy_layer)
    assert len(bad) == 2
    assert bad[0].startswith("toy.low.a (layer 1, toy.low) imports toy.top.b")
    assert bad[1].startswith("toy.side (layer 2, toy.side) imports toy.mid")


def test_a_circle_is_caught(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from toy import b\n", "b.py": "from toy.c import x\n", "c.py": "import toy.a\nx = 1\n",
        "d.py": "from toy import a\n",  # depends on the circle, is not part of it
    })
    assert import_cycles(import_graph(pkg)) == [["toy.a", "toy.b", "toy.c"]]


def test_relative_imports_resolve(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "", "base.py": "",
        "low/__init__.py": "from . import a\nfrom .a import f\nfrom .. import base\n", "low/a.py": "",
    })
    assert import_graph(pkg)["toy.low"] == {"toy.low.a", "toy.base"}


@pytest.mark.parametrize("module, room", [("nerf", "nerf"), ("nerf.jobs.render", "nerf.jobs"),
                                          ("nerf.cameras", "nerf.cameras")])
def test_room_of(module, room):
    assert room_of(module) == room


def test_room_of_refuses_an_unlisted_module():
    with pytest.raises(KeyError):
        room_of("nerf.unlisted_module")
