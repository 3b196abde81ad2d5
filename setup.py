"""Ship lambdaguard_inherit.pth next to the package, and build the audit gate (setup.cfg
holds everything else).

A .pth file must sit at the top of site-packages, outside any package, which setup.cfg
cannot express: build_py copies it into the build tree's root, and the wheel (regular or
editable) installs it from there. See docs/processes.md, "Carrying the policy".
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

PTH = "lambdaguard_inherit.pth"


class build_py_with_pth(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            # An editable wheel ignores build_lib and ships what is in the install directory
            # (setuptools' editable_wheel points install_lib at the unpacked wheel).
            install_lib = self.get_finalized_command("install").install_lib
            self.copy_file(PTH, os.path.join(install_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


# The audit hook's C gate (lambdaguard/_audit_gate.c). Optional: where it cannot be
# compiled the install still succeeds and the hook runs in Python, slower, same verdicts.
AUDIT_GATE = Extension("lambdaguard._audit_gate", ["lambdaguard/_audit_gate.c"], optional=True)
# The socket patches' fast path (lambdaguard/_socket_fastpath.c). Optional in the same way:
# without it the Python replacement methods are the patches, same verdicts.
SOCKET_FASTPATH = Extension(
    "lambdaguard._socket_fastpath", ["lambdaguard/_socket_fastpath.c"], optional=True
)

setup(cmdclass={"build_py": build_py_with_pth}, ext_modules=[AUDIT_GATE, SOCKET_FASTPATH])
