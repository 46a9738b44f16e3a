# The integrity guard's kernel side: installed in the learner's kernel before any learner code runs.
#
# This file is never imported by the grader. autograder/guard.py reads it as text and runs it as the
# first (silent) cell of every sandboxed kernel, then calls ``_vlm_install_guard(KEY, NAME, PREFIXES)``
# once. It is a real file so that editors, linters and the duplicate finder see it. It must stay
# self-contained: everything it uses is imported inside the function (the kernel has nothing else).
def _vlm_install_guard(KEY, NAME, PREFIXES):
    import builtins
    import hashlib
    import hmac
    import json
    import sys
    import types

    import numpy
    import torch
    try:
        import vlmcourse.checks  # noqa: F401
    except Exception:
        pass
    from IPython import get_ipython
    ip = get_ipython()
    _setattr, _delattr, _isinstance, _issubclass, _type = setattr, delattr, isinstance, issubclass, type
    _callable, _list, _dict, _len, _str, _tuple, _getattr = callable, list, dict, len, str, tuple, getattr
    _modules, _vars = sys.modules, vars
    _settrace, _gettrace, _setprofile, _getprofile = sys.settrace, sys.gettrace, sys.setprofile, sys.getprofile
    _subclasses = type.__dict__["__subclasses__"]
    _hmac_new, _sha256, _dumps = hmac.new, hashlib.sha256, json.dumps
    MISSING = object()
    SUSPICIOUS = {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__",
                  "__torch_function__", "__torch_dispatch__", "__array_ufunc__", "__array_function__",
                  "__instancecheck__", "__subclasscheck__", "__float__", "__int__", "__index__"}
    VALUE_TYPES = (torch.Tensor, numpy.ndarray, numpy.generic, int, float, complex, str, bytes, tuple,
                   list, dict, set, frozenset, type)
    try:
        cell_dir = ip.compile.get_code_name("pass", "pass", 0).rsplit("/", 1)[0]
    except Exception:
        cell_dir = "<ipython-input"
    snap_modules, snap_classes, protected, marked = {}, {}, {}, {}
    CRITICAL = {("torch", n) for n in ("allclose", "equal", "isclose", "all", "any", "eq", "ne", "abs", "max",
                                       "is_tensor", "isfinite", "as_tensor", "tensor", "testing")}
    CRITICAL |= {("numpy", n) for n in ("allclose", "array_equal", "isclose", "all", "any", "asarray", "array",
                                        "testing", "isfinite", "unravel_index")}
    CRITICAL |= {("torch.testing", "assert_close"), ("math", "isclose"), ("math", "isfinite")}
    CRITICAL_MODULES = {"builtins", "vlmcourse", "vlmcourse.checks", "numpy.testing", "torch.testing"}
    CRITICAL_CLASSES = {torch.Tensor, torch._C.TensorBase, numpy.ndarray, torch.nn.Module}
    state = {"n": 0}

    def wanted(name):
        return name.split(".")[0] in PREFIXES

    def snapshot_modules():
        for name, module in _list(_modules.items()):
            if module is None or name in snap_modules or not wanted(name):
                continue
            try:
                values = _dict(_vars(module))
            except TypeError:
                continue
            snap_modules[name] = (module, {k: v for k, v in values.items()
                                           if _callable(v) or _isinstance(v, types.ModuleType)})
            for value in values.values():
                if _isinstance(value, type) and _getattr(value, "__module__", None) == name \
                        and id(value) not in snap_classes:
                    snap_classes[id(value)] = (value, _dict(value.__dict__))

    shell_lists = {}
    def snapshot_shell():
        shell_lists["ast"] = _list(ip.ast_transformers)
        shell_lists["post"] = _list(ip.input_transformers_post)
        shell_lists["cleanup"] = _list(ip.input_transformers_cleanup)
        manager = ip.input_transformer_manager
        shell_lists["m_cleanup"] = _list(manager.cleanup_transforms)
        shell_lists["m_line"] = _list(manager.line_transforms)
        shell_lists["m_token"] = _list(manager.token_transformers)
        shell_lists["events"] = {k: _list(v) for k, v in ip.events.callbacks.items()}
        shell_lists["shell_vars"] = _dict(_vars(ip))
        shell_lists["kernel_vars"] = _dict(_vars(ip.kernel)) if _getattr(ip, "kernel", None) is not None else {}

    def restore_list(current, saved, label, problems):
        if _list(current) != saved:
            problems.append(label)
            current[:] = saved

    def check_shell(problems):
        restore_list(ip.ast_transformers, shell_lists["ast"], "IPython AST transformers", problems)
        restore_list(ip.input_transformers_post, shell_lists["post"], "IPython input transformers", problems)
        restore_list(ip.input_transformers_cleanup, shell_lists["cleanup"], "IPython input transformers", problems)
        manager = ip.input_transformer_manager
        restore_list(manager.cleanup_transforms, shell_lists["m_cleanup"], "IPython input transformers", problems)
        restore_list(manager.line_transforms, shell_lists["m_line"], "IPython input transformers", problems)
        restore_list(manager.token_transformers, shell_lists["m_token"], "IPython token transformers", problems)
        for key, saved in shell_lists["events"].items():
            callbacks = ip.events.callbacks[key]
            added = [c for c in callbacks if c not in saved and from_notebook(c)]
            if added:
                problems.append("IPython event callbacks")
                for callback in added:
                    callbacks.remove(callback)
        if ip.custom_exceptions:
            problems.append("IPython custom exception handler")
            ip.custom_exceptions = ()
        for obj, saved, label in ((ip, shell_lists["shell_vars"], "IPython shell"),
                                  (_getattr(ip, "kernel", None), shell_lists["kernel_vars"], "kernel")):
            if obj is None:
                continue
            current = _vars(obj)
            for key, value in _list(current.items()):
                old = saved.get(key, MISSING)
                if old is MISSING:
                    if _callable(value) and _callable(_getattr(_type(obj), key, None)):
                        problems.append(label + "." + key)
                        _delattr(obj, key)
                elif old is not value and (_callable(old) or _callable(value)):
                    problems.append(label + "." + key)
                    current[key] = old
        if _gettrace() is not None:
            problems.append("sys.settrace hook")
            _settrace(None)
        if _getprofile() is not None:
            problems.append("sys.setprofile hook")
            _setprofile(None)

    def from_notebook(value, depth=0):
        """True if ``value`` was made by notebook code (a cell, exec'd text), not by a library."""
        if depth > 3:
            return False
        for inner in ("__func__", "func", "__wrapped__"):
            wrapped = _getattr(value, inner, None) if not _isinstance(value, type) else None
            if wrapped is not None and wrapped is not value and from_notebook(wrapped, depth + 1):
                return True
        code = _getattr(value, "__code__", None)
        if code is not None:
            name = code.co_filename
            return name.startswith(cell_dir) or name == "<string>" or name.startswith("<ipython")
        owner = value if _isinstance(value, type) else _type(value)
        return _getattr(owner, "__module__", None) == "__main__"

    def check_modules(problems):
        for name, (module, saved) in snap_modules.items():
            current = _vars(module)
            for key, value in saved.items():
                now = current.get(key, MISSING)
                if now is value or (now is not MISSING and not from_notebook(now)
                                    and (name, key) not in CRITICAL and name not in CRITICAL_MODULES):
                    continue        # a library's own lazy patching (torch._dynamo wraps manual_seed ...)
                problems.append(name + "." + key)
                try:
                    _setattr(module, key, value)
                except Exception:
                    current[key] = value
        for cls, saved in snap_classes.values():
            current = cls.__dict__
            if _len(current) == _len(saved) and all(current.get(k, MISSING) is v for k, v in saved.items()):
                continue
            critical = cls in CRITICAL_CLASSES
            for key in _list(set(saved) | set(current)):
                old, now = saved.get(key, MISSING), current.get(key, MISSING)
                if old is now or not (from_notebook(now) or (critical and (key in SUSPICIOUS or old is not MISSING))):
                    continue
                problems.append(cls.__module__ + "." + cls.__qualname__ + "." + key)
                try:
                    if old is MISSING:
                        _delattr(cls, key)
                    else:
                        _setattr(cls, key, old)
                except Exception:
                    pass

    def check_names(problems):
        namespace = ip.user_ns
        for key, value in protected.items():
            if namespace.get(key, MISSING) is not value:
                problems.append("notebook name `" + key + "` (defined by a setup cell)")
                namespace[key] = value

    def user_defined(cls):
        if _getattr(cls, "__module__", None) == "__main__":
            return True
        for value in _vars(cls).values():
            code = _getattr(value, "__code__", None)
            if code is not None and code.co_filename.startswith(cell_dir):
                return True
        return False

    def describe(cls):
        own = set(_vars(cls)) & SUSPICIOUS
        if "__dataclass_fields__" in _vars(cls):
            own.discard("__eq__")
        if _issubclass(cls, VALUE_TYPES) or own:
            return cls.__qualname__ + (" overrides " + ", ".join(sorted(own)) if own
                                       else " subclasses a tensor/array/value type")
        return None

    def walk(root):
        seen, stack = set(), [root]
        while stack:
            cls = stack.pop()
            try:
                children = _subclasses(cls)
            except TypeError:
                continue
            for child in children:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)
                    yield child

    def suspicious_classes():
        """Notebook-made classes that could fool a comparison. Cheap test on every class (its
        module), full test (where its methods were compiled) on subclasses of value types."""
        found = set()
        for child in walk(object):
            try:
                if _getattr(child, "__module__", None) == "__main__":
                    text = describe(child)
                    if text:
                        found.add(text)
            except Exception:
                continue
        for base in VALUE_TYPES:
            for child in walk(base):
                try:
                    if user_defined(child):
                        found.add(describe(child) or child.__qualname__ + " subclasses a value type")
                except Exception:
                    continue
        return sorted(found)

    def answer(action, payload):
        state["n"] += 1
        payload = _dict(payload, n=state["n"], action=action)
        text = _dumps(payload, sort_keys=True)
        return text + "|" + _hmac_new(KEY, text.encode(), _sha256).hexdigest()

    def guard(action, arg=None):
        problems = []
        if action == "mark":
            marked.clear()
            marked.update({k: id(v) for k, v in ip.user_ns.items()})
        elif action == "protect":
            for key, value in _list(ip.user_ns.items()):
                if not key.startswith("_") and marked.get(key) != id(value):
                    protected[key] = value
            snapshot_modules()
        elif action in ("before", "after"):
            check_shell(problems)
            check_modules(problems)
            check_names(problems)
        result = {"problems": sorted(set(problems)), "cell": arg}
        if action == "after":
            result["suspicious"] = suspicious_classes()
        return answer(action, result)

    snapshot_modules()
    snapshot_shell()
    _setattr(builtins, NAME, guard)
    ip.user_ns.pop("_vlm_install_guard", None)
    return answer("install", {"problems": [], "cell": None})
