"""Structure counts of the package, for before/after notes on a refactor.

    python benchmarks/structure.py [PACKAGE_DIR]

Prints: lines in cli/ against the whole package, functions longer than 80 lines, model-family
switches outside the family code (``isinstance(..., DDPMModel|FlowModel|...Pipeline)`` and
comparisons of a ``family``/``method`` string with "ddpm"/"rf"/"flow"/"ldm"), and in how many
files each sampler name appears as a value in code: a string literal that is the name itself
(a default, a key, a comparison), not a docstring or a sentence of help that mentions it.
"ddpm" is also the family's name, so for it only literals in a sampler's place count (a
``sampler=``/``solver=`` argument or default, an assignment to or a comparison with a name
that says sampler or solver). Sentences naming a sampler are listed apart, as prose.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FAMILY_TYPES = re.compile(r"^(DDPMModel|FlowModel|DDPMPipeline|FlowPipeline)$")
FAMILY_WORDS = {"ddpm", "rf", "flow", "ldm"}
SAMPLERS = (
    "ddpm",
    "ddim",
    "dpm++2m",
    "dpm++3m",
    "unipc",
    "euler",
    "midpoint",
    "heun",
    "rk4",
    "dopri5",
)


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def family_switches(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if any(FAMILY_TYPES.match(n) for n in names):
                lines.append(node.lineno)
        if isinstance(node, ast.Compare):
            consts = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
            text = ast.unparse(node.left)
            if consts & FAMILY_WORDS and re.search(r"family|method|kind", text):
                lines.append(node.lineno)
    return lines


SAMPLER_PLACE = re.compile(r"sampler|solver", re.IGNORECASE)


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants of a module, its classes and functions."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr):
            value = node.body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def in_sampler_place(node: ast.Constant, parents: dict[int, ast.AST]) -> bool:
    """Whether a literal stands where a sampler goes: an argument of a call or keyword
    that names a sampler (``@sampler("ddpm", ...)``, ``sampler="ddpm"``), a default
    of a ``sampler`` parameter, an assignment to or a comparison with such a name."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.keyword):
        return bool(parent.arg and SAMPLER_PLACE.search(parent.arg))
    if isinstance(parent, ast.Call):  # @sampler("ddpm", ...), sampler_spec("ddpm")
        return bool(SAMPLER_PLACE.search(ast.unparse(parent.func)))
    if isinstance(parent, ast.Compare | ast.Assign | ast.AnnAssign | ast.BoolOp | ast.IfExp):
        return bool(SAMPLER_PLACE.search(ast.unparse(parent)))
    if isinstance(parent, ast.arguments):
        names = [a.arg for a in parent.args + parent.kwonlyargs]
        return any(SAMPLER_PLACE.search(n) for n in names)
    return False


def main() -> None:
    pkg = Path(sys.argv[1] if len(sys.argv) > 1 else "diffkit")
    total = cli = 0
    long_fns, switches = [], []
    sampler_files: dict[str, set[str]] = {s: set() for s in SAMPLERS}
    sampler_prose: dict[str, set[str]] = {s: set() for s in SAMPLERS}
    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(pkg))
        n = len(text.splitlines())
        total += n
        cli += n if rel.startswith("cli/") else 0
        tree = ast.parse(text)
        for fn in functions(tree):
            length = fn.end_lineno - fn.lineno + 1
            if length > 80:
                long_fns.append((length, f"{rel}:{fn.name}"))
        in_family = rel.startswith(("families/", "models/"))
        switches += [] if in_family else [f"{rel}:{ln}" for ln in family_switches(tree)]
        skip = docstrings(tree)
        parents = {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words = set(re.split(r"[\s,|/()`'\"]+", node.value))
                for s in SAMPLERS:
                    if node.value == s and (s != "ddpm" or in_sampler_place(node, parents)):
                        sampler_files[s].add(rel)
                    elif s != "ddpm" and s in words and id(node) not in skip:
                        sampler_prose[s].add(rel)
    print(f"cli/: {cli} of {total} lines ({100 * cli / total:.0f} %)")
    print(f"functions over 80 lines: {len(long_fns)}")
    for length, name in sorted(long_fns, reverse=True):
        print(f"  {length:4d} {name}")
    print(f"family switches outside models/ and families/: {len(switches)}")
    for s in switches:
        print(f"  {s}")
    print("files holding each sampler's name as a value in code:")
    for s, files in sampler_files.items():
        print(f"  {s}: {len(files)} {sorted(files)}")
    print("files whose help or messages mention it (prose, not counted):")
    for s, files in sampler_prose.items():
        print(f"  {s}: {len(files - sampler_files[s])} {sorted(files - sampler_files[s])}")


if __name__ == "__main__":
    main()
