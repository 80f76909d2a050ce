"""The check that an adapter is built on the core's public API alone: the
imports of a module's source that reach a private name of the core
(``mbcore._*``, the kernels, or an underscored name from ``mbcore``), read
with ``ast``."""
import ast


def private_core_imports(source, module):
    """The imports in ``source`` (the text of ``module``) that reach a private
    name of the core, as strings.  The adapters' own modules
    (``mbcore.adapters.*``, e.g. ``_theano_compat``) are not the core's."""
    found = []
    package_parts = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            targets = [(target, alias.name) for alias in node.names]
        else:
            continue
        for target, name in targets:
            parts = target.split(".")
            if parts[0] != "mbcore" or parts[1:2] == ["adapters"]:
                continue
            if any(p.startswith("_") for p in parts[1:]) or (
                    name is not None and len(parts) == 1 and name.startswith("_")):
                found.append(f"{target}.{name}" if name else target)
    return found
