"""Any program beside Django (``npm run watch``, a tailwind watcher): ARGS is its argv, no shell."""

from __future__ import annotations

import os
import shutil

from backends.base import Backend, ConfigError, shown


class Command(Backend):
    kind = "command"
    accepts = (list, str)
    runs_django = False

    def argv(self) -> list[str]:
        if not self.extra:
            raise ConfigError(
                f'{self.name}: ARGS is empty; give the command, e.g. ["npm", "run", "watch"]'
            )
        argv = self._checked_argv(list(self.extra))  # before a NUL reaches shutil.which
        program = argv[0]
        if "/" in program:  # relative paths are relative to the project, where the child starts
            program = os.path.join(self.project.base_dir, program)
        if shutil.which(program) is None:
            raise ConfigError(
                f"{self.name}: program {shown(argv[0])} not found; install it or give its full path"
            )
        return argv
