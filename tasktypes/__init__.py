"""Task types, one module each: parameters, workflow, activities and one registration.

Importing this package imports every module in it, and each registers its type
(``taskdrive.registry``). So a new type is a new module here and nothing else; see
docs/adding-a-task-type.md.
"""

import importlib
import pkgutil

from temporalio import workflow

MODULES = sorted(
    info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
)

# The workflow sandbox imports a run's module afresh for every run; importing every type there
# too would rebuild all their models each time (most of a small task's CPU). It needs only the
# module of the workflow it runs, which it imports itself.
if not workflow.unsafe.in_sandbox():
    for _name in MODULES:
        importlib.import_module(f"{__name__}.{_name}")
