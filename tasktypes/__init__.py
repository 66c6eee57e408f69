"""Task types, one module each: parameters, workflow, activities and one registration.

Importing this package imports every module in it, and each registers its type
(``taskdrive.registry``). So a new type is a new module here and nothing else; see
docs/adding-a-task-type.md.
"""

import importlib
import pkgutil

MODULES = sorted(
    info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
)

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
