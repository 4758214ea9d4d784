"""Build configuration that ``pyproject.toml`` cannot state: the page's example slices live once, in
the top-level ``examples/`` folder, and ship inside the package as ``segapp/bundled/examples/``.

``package_dir`` maps the package ``segapp.bundled.examples`` onto that folder, so a wheel (and an
sdist's wheel) carries the slices in the package, and ``segapp.bundled.EXAMPLES_DIR`` finds them
there; a source checkout and an editable install read ``examples/`` itself. Everything else is in
``pyproject.toml``.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["segapp", "segapp.*"]), "segapp.bundled.examples"],
    package_dir={"segapp.bundled.examples": "examples"},
)
