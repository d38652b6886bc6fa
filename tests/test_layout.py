"""The package's layering, read from the source: one job module per verb in `meshconf/jobs/`, no alias modules, no
import that reaches up a layer, libraries never import jobs, jobs never import each other, and no cycle."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "meshconf"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every meshconf module this one imports (module level and inside functions), resolved to module names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("meshconf"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("meshconf"):
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


# The layers, lowest first. A module imports only modules of its own layer or below: the engine never reaches up
# into a job, the models never into the engine, the assets (where files live, downloads) never into the models.
LAYERS = (
    ("constants", "errors"),
    ("geometry", "runtime", "files"),
    ("assets",),
    ("accel",),
    ("models", "openpose"),
    ("sp_op", "dataset", "classifier", "demo"),
    ("engine",),
    ("sensitivity", "qualitative"),
    ("jobs",),
    ("cli", "__main__", ""),
)
TOP = [entry.name for entry in PACKAGE.iterdir() if entry.name != "__pycache__"]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return rank
    raise AssertionError(f"{module} is in no layer: add meshconf/{top} to LAYERS in tests/test_layout.py")


JOB_MODULES = {name for name in MODULES if name.startswith("meshconf.jobs.")}


def test_the_card_packages_exist():
    for package in ("models", "openpose", "classifier", "sensitivity", "qualitative", "demo", "dataset", "sp_op",
                    "assets", "engine", "jobs", "files"):
        assert (PACKAGE / package / "__init__.py").is_file(), package
    assert (PACKAGE / "constants.py").is_file()


def test_one_job_module_per_verb():
    """`ls meshconf/jobs` is `meshconf --help`: one module per verb, each named by its verb."""
    from meshconf.cli import JOBS

    assert {f"meshconf.jobs.{verb.replace('-', '_')}" for verb in JOBS} == JOB_MODULES
    assert all(module == f"meshconf.jobs.{verb.replace('-', '_')}" for verb, (module, _) in JOBS.items())
    for name in JOB_MODULES:
        source = MODULES[name].read_text()
        assert "def add_arguments(" in source and "def run(" in source, name


def test_no_alias_module_and_one_main():
    """Every job runs as `meshconf <job>` or `python -m meshconf <job>`; no module is a second way in."""
    mains = [name for name in MODULES if name.endswith("__main__")]
    assert mains == ["meshconf.__main__"], mains
    runnable = [name for name, path in MODULES.items() if '__name__ == "__main__"' in path.read_text()]
    assert runnable == [], runnable
    stubs = [name for name, path in MODULES.items() if path.parent == PACKAGE and path.name != "__init__.py"
             and len(path.read_text().splitlines()) < 12
             and name not in ("meshconf.__main__",)]
    assert stubs == [], f"modules of a few lines at the top of meshconf/ (aliases?): {stubs}"


def test_top_of_the_package_is_small():
    assert len(TOP) <= 25, sorted(TOP)


def test_no_upward_import():
    bad = [(name, target) for name, targets in GRAPH.items() for target in targets if _layer(target) > _layer(name)]
    assert not bad, f"imports that reach up a layer: {bad}"


def test_libraries_never_import_jobs():
    bad = [(lib, job) for lib, targets in GRAPH.items() if lib not in JOB_MODULES and lib != "meshconf.cli"
           for job in targets if job in JOB_MODULES]
    assert not bad, f"library modules importing job modules: {bad}"


def test_jobs_never_import_other_jobs():
    bad = [(job, target) for job in JOB_MODULES for target in GRAPH[job] & JOB_MODULES]
    assert not bad, f"jobs importing other jobs (move the shared code into a library): {bad}"


def test_no_private_names_across_modules():
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                bad += [(name, a.name) for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, f"private names imported from another module: {bad}"


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.slow
def test_every_job_runs_as_python_dash_m_meshconf():
    import subprocess
    import sys

    from meshconf.cli import JOBS

    for job in JOBS:
        done = subprocess.run([sys.executable, "-m", "meshconf", job, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and f"usage: meshconf {job}" in done.stdout, (job, done.stderr[-500:])


def test_libraries_take_typed_options_not_argparse():
    """Only jobs (and the options module that declares the shared flags) see argparse's Namespace; libraries take
    typed options or plain arguments."""
    allowed = {"meshconf.cli", "meshconf.engine.options"}
    bad = []
    for name, path in MODULES.items():
        if name in JOB_MODULES or name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(a.arg == "args" for a in node.args.args + node.args.kwonlyargs):
                    bad.append(f"{name}.{node.name}")
    assert not bad, f"library functions taking `args`: {bad}"
