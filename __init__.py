"""Not the fnnet package: the top folder of fnnet's git clone (the package is ``fnnet/``).

Why this file exists: a clone made with ``git clone .../fnnet`` is a folder named
``fnnet``. Run a script from the folder that HOLDS the clone and ``import fnnet``
finds that folder first (Python searches the current directory before the
installed packages). Without this file it would be imported as an empty
namespace package, and the first ``fn.serial`` would fail with the puzzling
``module 'fnnet' has no attribute 'serial'``. With it, the import runs this
file, which says what happened and what to do. Nothing else imports it: inside
the clone, or with fnnet installed and the clone not in the current directory,
``import fnnet`` finds the real package.
"""

import os as _os

_clone = _os.path.dirname(_os.path.abspath(__file__))
# only `import fnnet` resolving to this folder is the mistake; pytest may import the
# folder under its own name (the clone's top folder is a package to it): harmless
if __name__ == "fnnet":
    raise ImportError(
        f"`import {__name__}` found {_clone}, the folder of fnnet's git clone (README.md, "
        f"pyproject.toml and the package folder fnnet/), not the package itself. Python found it "
        f"in {_os.path.dirname(_clone)} (the folder of the script you ran, or the current "
        f"directory), which it searches before the installed packages, so this folder shadows "
        f"them. Run your script from another folder after `pip install -e {_clone}`, or from "
        f"inside the clone (cd {_clone}), or put the clone first on the path "
        f"(PYTHONPATH={_clone})."
    )
