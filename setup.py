"""setuptools hooks (the rest is pyproject.toml): an artefact records its build.

``proxy/_build.py`` (``BUILD = "<git describe>"``, read by proxy/build.py) is written into the
sdist's tree and into a wheel's build directory, never into the checkout: a wheel built from
the sdist (as ``python -m build`` does) copies the sdist's file, one built from a checkout
gets it from git. An editable install writes none and asks git at run time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("_dnsfw_build", HERE / "proxy" / "build.py")
buildinfo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(buildinfo)


def write_build(package_dir: Path) -> None:
    """proxy/_build.py under ``package_dir`` from git; kept if git cannot tell (an sdist)."""
    target = package_dir / "proxy" / "_build.py"
    found = buildinfo.describe(HERE)
    if found is None and target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f'"""Written by setup.py when this artefact was built."""\n\nBUILD = {found or "unknown"!r}\n'
    )


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            write_build(Path(self.build_lib))


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proxy" / "_build.py"
        if target.exists():  # a hard link to a file that make_release_tree copied in
            os.unlink(target)
        write_build(Path(base_dir))


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
