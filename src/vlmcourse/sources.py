"""Which library functions an exercise's code reaches: "write it yourself" made checkable.

An exercise that is compared with ``torch.softmax`` cannot be answered by calling ``torch.softmax``.
:func:`forbidden_calls` reads the learner's source (never runs it), follows the learner's own
functions and classes that the exercise uses, and reports every use of a forbidden name:
``torch.softmax(x)``, ``F.softmax``, ``x.softmax(-1)``, ``from torch import softmax as s``.

The same function serves the visible test in the notebook (:func:`assert_written_by_hand`, on the
source of the functions the kernel holds) and the grader (on the submitted cells, outside the kernel).
Access by computed names (``getattr(torch, "soft" + "max")``, ``eval``, ``__import__``) cannot be
read this way: :func:`dynamic_access` lists it so that a person can look.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Iterable

DYNAMIC = {"getattr", "eval", "exec", "compile", "__import__", "globals", "vars", "import_module"}
# called as attributes, these still reach code by name (``x.eval()`` or ``torch.compile(f)`` do not)
DYNAMIC_ATTRIBUTES = {"import_module", "__import__"}
BUILTINS_MODULES = {"builtins", "__builtins__"}


@functools.lru_cache(maxsize=1024)
def _parse(source: str) -> ast.Module | None:
    """The syntax tree of one cell (None if it does not parse); cells are read many times, parsed once."""
    try:
        return ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None


def _definitions(sources: Iterable[str]) -> dict[str, ast.AST]:
    """Top-level functions and classes of the sources, by name (the last definition wins, as in a kernel)."""
    found: dict[str, ast.AST] = {}
    for source in sources:
        tree = _parse(source)
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                # ``softmax = torch.softmax`` or ``softmax = lambda x, dim: ...`` defines it too
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value
    return found


@functools.lru_cache(maxsize=64)
def _from_imports(sources: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """Every ``from module import name [as alias]`` of the sources: (alias, module, name)."""
    found = []
    for source in sources:
        tree = _parse(source)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.ImportFrom):
                found += [(a.asname or a.name, node.module or "", a.name) for a in node.names]
    return tuple(found)


def _imported_aliases(sources: Iterable[str], forbidden: set[str]) -> dict[str, str]:
    """Names bound by ``from m import name [as alias]`` where ``name`` is forbidden: alias -> m.name."""
    return {alias: f"{module}.{name}" for alias, module, name in _from_imports(tuple(sources)) if name in forbidden}


def _bound_in(body: list[ast.AST]) -> set[str]:
    """Names a function body binds (its locals), nested functions' and classes' insides excluded,
    ``global``/``nonlocal`` names excluded."""
    bound, declared = set(), set()
    todo = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            todo += node.decorator_list
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared |= set(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        todo += list(ast.iter_child_nodes(node))
    return bound - declared


def _free_names(definition: ast.AST) -> list[ast.Name]:
    """The names ``definition`` loads from outside the functions that load them: the globals (other
    learner definitions, setup imports) it may reach. A parameter or local variable that happens to
    share a global's name is not that global."""
    free: list[ast.Name] = []

    def visit(node: ast.AST, bound: frozenset[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            outside = [*getattr(node, "decorator_list", []), *args.defaults, *(d for d in args.kw_defaults if d)]
            outside += [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.annotation]
            for child in outside:                     # evaluated in the enclosing scope
                visit(child, bound)
            params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}
            body = node.body if isinstance(node.body, list) else [node.body]
            inner = bound | params | _bound_in(body)
            for child in body:
                visit(child, inner)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            free.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child, bound)

    visit(definition, frozenset())
    return free


def _reachable(definitions: dict[str, ast.AST], start: str) -> list[ast.AST]:
    """The definition of ``start`` and every learner definition its code names, transitively."""
    seen, todo, reached = set(), [start], []
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        reached.append(definitions[name])
        todo += [n.id for n in _free_names(definitions[name])]
    return reached


def _dotted(node: ast.AST) -> str:
    """``torch.nn.functional.softmax`` for an attribute chain; ``<expr>.softmax`` when it starts elsewhere."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")
    return ".".join(reversed(parts))


def forbidden_calls(sources: Iterable[str], function: str, forbidden: Iterable[str]) -> list[str]:
    """Uses of forbidden names in ``function`` and the learner's code it reaches.

    Args:
        sources: the learner's code cells (or the sources of the functions a kernel holds).
        function: the exercise's function or class name.
        forbidden: last components of the references, e.g. ``("softmax", "Softmax")``: attribute
            access ``<anything>.softmax``, names imported as ``from ... import softmax`` and the
            plain name ``softmax`` bound outside the sources (by a setup cell's import) count; the
            learner's own function of that name, called by its plain name, does not.
    Returns:
        the uses found, as written (``"torch.softmax"``, ``"x.softmax"``), sorted; empty if none.
    """
    sources, forbidden = list(sources), set(forbidden)
    aliases = _imported_aliases(sources, forbidden)
    definitions = _definitions(sources)
    uses = set()
    for definition in _reachable(definitions, function):
        for node in ast.walk(definition):
            if isinstance(node, ast.Attribute) and node.attr in forbidden:
                uses.add(_dotted(node))
            elif isinstance(node, ast.Name) and node.id in aliases and node.id not in definitions:
                uses.add(aliases[node.id])      # imported, at the top or inside the function
        for node in _free_names(definition):     # a local variable of the same name is not the reference
            if node.id in forbidden and node.id not in definitions and node.id not in aliases:
                uses.add(node.id)      # bound elsewhere (a setup cell's ``from open_clip.loss import ClipLoss``)
    return sorted(uses)


def dynamic_access(sources: Iterable[str], function: str) -> list[str]:
    """Names of dynamic-access built-ins (``getattr``, ``eval``, ``__import__`` ...) that ``function``
    and the learner's code it reaches call: what :func:`forbidden_calls` cannot see through."""
    sources = list(sources)
    found = set()
    for definition in _reachable(_definitions(sources), function):
        local_calls = {id(n) for n in ast.walk(definition) if isinstance(n, ast.Name)} - \
            {id(n) for n in _free_names(definition)}
        for node in ast.walk(definition):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in DYNAMIC and id(func) not in local_calls:
                found.add(func.id)
            elif isinstance(func, ast.Attribute) and (func.attr in DYNAMIC_ATTRIBUTES or (
                    func.attr in DYNAMIC and isinstance(func.value, ast.Name) and func.value.id in BUILTINS_MODULES)):
                found.add(func.attr)
    return sorted(found)


def _source_of(value: object) -> str | None:
    """The source of a function or class defined in a notebook cell (None if it cannot be found)."""
    try:
        return inspect.getsource(value)
    except (OSError, TypeError):
        pass
    if inspect.isclass(value):   # a class of a notebook (module __main__, no file): its methods' sources
        methods = [_source_of(f) for f in vars(value).values() if inspect.isfunction(f)]
        body = "".join(textwrap.indent(textwrap.dedent(m), "    ") for m in methods if m)
        return f"class {value.__name__}:\n" + (body or "    pass\n")
    return None


def _kernel_sources(obj: object) -> list[str]:
    """Sources of ``obj`` and of the functions and classes defined next to it (in the notebook)."""
    namespace = getattr(obj, "__globals__", None)
    if namespace is None:                       # a class: the namespace of its methods, else its module's
        method = next((f for f in vars(obj).values() if inspect.isfunction(f)), None)
        module = inspect.getmodule(obj)
        namespace = method.__globals__ if method else vars(module) if module else {}
    sources = []
    for value in [*namespace.values(), obj]:
        if (inspect.isfunction(value) or inspect.isclass(value)) and \
                getattr(value, "__module__", None) == getattr(obj, "__module__", None):
            source = _source_of(value)
            if source:
                sources.append(source)
    return sources


def assert_written_by_hand(obj: object, *forbidden: str, reference: str | None = None) -> None:
    """Fail, saying so, when the exercise ``obj`` (a function or class) calls one of ``forbidden``.

    Args:
        obj: the learner's function or class.
        forbidden: last components of the forbidden references, e.g. ``"softmax"``.
        reference: how to name the reference in the message (default: the names found).
    """
    name = getattr(obj, "__name__", str(obj))
    uses = forbidden_calls(_kernel_sources(obj), name, forbidden)
    if uses:
        compared = f" ({reference})" if reference else ""
        raise AssertionError(
            f"`{name}` calls {', '.join(f'`{u}`' for u in uses)}: you called the reference it is compared "
            f"with{compared}. Write it yourself, as the exercise asks.")
