"""Task types: each module holds a type's plain data contracts and its registration.

Importing this package registers every type.
"""

from taskdrive.tasktypes import upload as upload

__all__ = ["upload"]
