"""The package's layering, read from the source: libraries never import jobs, a job imports another job only
inside its own package, and no module imports itself back through others (no cycle)."""

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


def _jobs() -> set[str]:
    from meshconf.cli import JOBS

    jobs = {module for module, _ in JOBS.values()}
    jobs |= {"meshconf.sensitivity.dataset_job", "meshconf.__main__"}
    # the `python -m meshconf.<job>` aliases are jobs too
    jobs |= {n for n, p in MODULES.items() if n.count(".") == 1 and n != "meshconf.cli"
             and "python -m meshconf." in p.read_text()[:200]}
    jobs |= {n for n in MODULES if n.endswith(".__main__")}
    return jobs


JOB_MODULES = _jobs()


def _owner(module: str) -> str:
    return module.rsplit(".", 1)[0]


def test_the_card_packages_exist():
    for package in ("models", "openpose", "classifier", "sensitivity", "qualitative", "demo", "dataset", "sp_op",
                    "assets", "engine", "jobs", "files"):
        assert (PACKAGE / package / "__init__.py").is_file(), package
    for module in ("meshconf.jobs.demo", "meshconf.jobs.qualitative", "meshconf.jobs.extract",
                   "meshconf.jobs.prepare", "meshconf.jobs.train", "meshconf.jobs.evaluate",
                   "meshconf.jobs.annotate", "meshconf.jobs.doctor", "meshconf.jobs.fetch"):
        assert module in JOB_MODULES, module


def test_libraries_never_import_jobs():
    bad = [(lib, job) for lib, targets in GRAPH.items() if lib not in JOB_MODULES and lib != "meshconf.cli"
           for job in targets if job in JOB_MODULES]
    assert not bad, f"library modules importing job modules: {bad}"


def test_jobs_import_only_the_jobs_they_own():
    bad = []
    for job in JOB_MODULES:
        for target in GRAPH[job] & JOB_MODULES:
            alias = job.count(".") == 1 or job.endswith("__main__")  # an alias or __main__ runs its one job
            if not alias and target != "meshconf.cli" and _owner(target) != _owner(job):
                bad.append((job, target))
    assert not bad, f"jobs importing other packages' jobs: {bad}"


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
def test_every_job_runs_as_python_dash_m():
    import subprocess
    import sys

    from meshconf.cli import JOBS

    for job in JOBS:
        module = "meshconf." + job.replace("-", "_")
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "usage" in done.stdout, (module, done.stderr[-500:])
