"""Task types, one module each: parameters, workflow, activities and one registration.

Importing this package registers them all (``taskdrive.registry``). A new type is a new module
here, added to the import list below; see docs/adding-a-task-type.md.
"""

from tasktypes import file_checksum

__all__ = ["file_checksum"]
