"""The built-in teacher-context sources, one file each; importing this package registers them all.

Every module of this package is imported here, so a new source is one new file that calls
:func:`coars_verl.distill.contexts.register_teacher_source` (docs/method.md, "Adding a teacher
source"). A source defined outside this package registers the same way from any module that the
run imports (e.g. the one your ``verl.plugins`` entry point names).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
