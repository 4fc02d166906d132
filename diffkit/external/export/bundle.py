"""The source files an export carries: ``modeling_diffkit.py`` (diffkit's network code and
the diffusers wrappers, in one file) and ``pipeline_diffkit.py``.

The network code is not a second, hand-kept copy: it is diffkit's own modules, read from
the installed package and joined in import order. Each module's ``diffkit`` imports are
removed after checking that every name they bring is defined earlier in the file; the
pydantic config classes the networks take are replaced by plain attribute holders that
keep their derived properties (``out_ch``, ``bottleneck_size``, ``latent_shape``), copied
from :mod:`diffkit.config.model`. An export therefore loads with torch and diffusers
alone, and runs exactly the code the model was trained with.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

MODELING_FILE = "modeling_diffkit.py"
PIPELINE_FILE = "pipeline_diffkit.py"

NETWORK_MODULES = (
    "diffkit.nn.layers",
    "diffkit.nn.conditioning",
    "diffkit.nn.unet",
    "diffkit.nn.mlp",
    "diffkit.nn.vae",
    "diffkit.external.export.modeling",
)
"""Bundled in this order: each module's diffkit imports come from the ones before it."""

CONFIG_MODULE = "diffkit.config.model"
CONFIG_CLASSES = ("UNetConfig", "MLPConfig", "VAEConfig")

CONFIG_BASE = '''
class _Config:
    """A network config read from config.json: its fields as attributes (JSON lists as
    tuples, as diffkit's pydantic configs hold them)."""

    def __init__(self, **fields):
        self.__dict__.update({k: tuple(v) if isinstance(v, list) else v
                              for k, v in fields.items()})
'''


def source_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"cannot find the source of {module}")
    return Path(spec.origin)


def pipeline_source(version: str) -> str:
    """``pipeline_diffkit.py``: :mod:`diffkit.external.export.pipeline` as it is."""
    text = source_path("diffkit.external.export.pipeline").read_text()
    return f"# {PIPELINE_FILE}: written by diffkit {version} (`diffkit export`).\n{text}"


def modeling_source(version: str) -> str:
    """``modeling_diffkit.py``: the bundled network code and wrappers (see module doc)."""
    imports: dict[str, None] = {}  # the non-diffkit imports, deduplicated, in order
    parts: list[str] = []
    defined: set[str] = set()
    for module in NETWORK_MODULES:
        if module == "diffkit.nn.unet":  # the configs come before the first network
            parts.append(_config_standins(defined))
        parts.append(_module_body(module, imports, defined))
    header = (f'"""{MODELING_FILE}: written by diffkit {version} (`diffkit export`); do not '
              "edit.\n\ndiffkit's network code (diffkit.nn, MIT licence) and the diffusers "
              "models around it.\nIt needs torch and diffusers, not diffkit.\n\"\"\"\n\n"
              "from __future__ import annotations\n\n")  # fmt: skip
    return header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(parts)


def _module_body(module: str, imports: dict[str, None], defined: set[str]) -> str:
    """The top-level statements of ``module`` but its docstring and imports (collected in
    ``imports``); its diffkit imports must name what ``defined`` holds."""
    text = source_path(module).read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    body: list[str] = [f"# --- {module} ---"]
    for node in tree.body:
        if _is_docstring(node) or _is_type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            _take_import(node, module, imports, defined)
            continue
        _refuse_inner_diffkit_imports(node, module)
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        body.append("\n".join(lines[start - 1 : node.end_lineno]))
        _define(node, module, defined)
    return "\n\n\n".join(body) + "\n"


def _take_import(node: ast.Import | ast.ImportFrom, module: str, imports: dict[str, None],
                 defined: set[str]) -> None:  # fmt: skip
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return
    names = [a.name for a in node.names]
    source = node.module if isinstance(node, ast.ImportFrom) else names[0]
    if (source or "").split(".")[0] != "diffkit":
        imports[ast.unparse(node)] = None
        return
    missing = [n for n in names if n not in defined]
    if isinstance(node, ast.Import) or missing:
        raise ValueError(f"{module}: {ast.unparse(node)} is not bundled before it")


def _refuse_inner_diffkit_imports(node: ast.AST, module: str) -> None:
    for inner in ast.walk(node):
        if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("diffkit"):
            raise ValueError(f"{module}: a function-level import of {inner.module}")


def _define(node: ast.stmt, module: str, defined: set[str]) -> None:
    """Record the names ``node`` defines; a second definition would shadow the first."""
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        names = [node.name]
    elif isinstance(node, ast.Assign):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        names = [node.target.id]
    else:
        names = []
    clash = [n for n in names if n in defined]
    if clash:
        raise ValueError(f"{module}: {clash} already defined by an earlier bundled module")
    defined.update(names)


def _config_standins(defined: set[str]) -> str:
    """``class UNetConfig(_Config)`` etc.: the docstring and properties of each config."""
    text = source_path(CONFIG_MODULE).read_text()
    lines = text.splitlines()
    classes = {n.name: n for n in ast.parse(text).body if isinstance(n, ast.ClassDef)}
    out = [f"# --- {CONFIG_MODULE} (fields from config.json, derived properties) ---",
           CONFIG_BASE.strip()]  # fmt: skip
    for name in CONFIG_CLASSES:
        cls = classes[name]
        members = [f"class {name}(_Config):"]
        if _is_docstring(cls.body[0]):
            members.append("\n".join(lines[cls.body[0].lineno - 1 : cls.body[0].end_lineno]))
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and _is_property(item):
                start = item.decorator_list[0].lineno
                members.append("\n".join(lines[start - 1 : item.end_lineno]))
        out.append("\n\n".join(members))
    defined.update({"_Config", *CONFIG_CLASSES})
    return "\n\n\n".join(out) + "\n"


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(
        node.value.value, str)  # fmt: skip


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _is_property(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
