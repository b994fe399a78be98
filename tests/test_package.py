"""The package as a whole: what `import minialbert` costs, and how its modules depend on each other."""

import ast
import configparser
import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import minialbert

PACKAGE = Path(minialbert.__file__).parent

FRESH_IMPORT = textwrap.dedent(
    """
    import importlib
    import sys

    def loaded(names):
        return [name for name in names if name in sys.modules]

    import minialbert

    heavy = ("datasets", "peft", "onnxruntime", "transformers.trainer", "minialbert.distillation")
    assert not loaded(heavy), loaded(heavy)
    # The commands that do not train load the Trainer's machinery no more than the package does.
    for module in ("convert", "published", "export", "export_job", "runtimes", "hub", "cli"):
        importlib.import_module(f"minialbert.{module}")
    training = ("datasets", "onnxruntime", "transformers.trainer")
    assert not loaded(training), loaded(training)
    for name in minialbert.__all__:
        assert getattr(minialbert, name) is not None, name
    namespace = {}
    exec("from minialbert import *", namespace)
    assert set(minialbert.__all__) <= set(namespace), set(minialbert.__all__) - set(namespace)
    assert set(minialbert.__all__) <= set(dir(minialbert))
    import minialbert.distillation as distillation

    assert {name for name in distillation.__all__ if getattr(distillation, name) is None} == set()
    print("ok")
    """
)


def test_import_minialbert_registers_the_models_without_the_training_stack():
    """In a fresh process: `import minialbert` loads neither the Trainer, datasets, PEFT nor ONNX Runtime, nor do
    the modules of the commands that do not train; every public name still imports from `minialbert` (each
    loading its own module), and every name of `minialbert.distillation` from there."""
    result = subprocess.run([sys.executable, "-c", FRESH_IMPORT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def internal_imports(path: Path) -> set[str]:
    """The package modules `path` imports, at its top or inside functions (a function-level import is a
    dependency all the same)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            if target.startswith("minialbert"):
                # `from . import x` and `from .pkg import y` may name a module or a name in one.
                names = [f"{target}.{alias.name}" for alias in node.names]
                found |= {name for name in names if name in MODULES} or {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("minialbert")}
    return {name for name in found if name in MODULES and name != module}


MODULES = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in PACKAGE.rglob("*.py")
}


def test_no_module_imports_one_that_imports_it_back():
    """The modules form a pipeline, not a web: no import cycle, counting imports inside functions; a package's
    `__init__`, which gathers its modules' names, may be imported by them only through those modules."""
    graph = {module: internal_imports(path) for module, path in MODULES.items()}
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            # The package's own modules import each other, never the `__init__` that re-exports them.
            graph = {name: targets - {module} if name.startswith(f"{module}.") else targets
                     for name, targets in graph.items()}  # fmt: skip
    cycles = []

    def visit(module, trail):
        for target in graph[module]:
            if target in trail:
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in done:
                visit(target, trail + [target])
        done.add(module)

    done = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not cycles, cycles


def declared_distributions() -> set[str]:
    """The distributions setup.cfg asks for, in install_requires and every extra (names normalised)."""
    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    lines += [line for extra in config["options.extras_require"].values() for line in extra.splitlines()]
    names = {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0] for line in lines}
    return {name.lower().replace("_", "-") for name in names if name and not name.startswith("#")} - {"minialbert"}


def test_every_library_the_package_imports_is_declared_in_setup_cfg():
    """Each third-party module the package imports (at its top or inside functions) comes from a distribution that
    setup.cfg declares itself, with the version range the code relies on; not one that only arrives as another
    package's dependency (filelock came with huggingface_hub until 5 changed its semantics)."""
    providers = importlib.metadata.packages_distributions()
    imported = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.partition(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"minialbert"}
    undeclared = {
        module: providers.get(module)
        for module in sorted(third_party)
        if not {name.lower().replace("_", "-") for name in providers.get(module, [module])} & declared_distributions()
    }
    assert "filelock" in third_party
    assert not undeclared, f"imported but not declared in setup.cfg: {undeclared}"
