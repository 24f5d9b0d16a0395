"""MkDocs hook: the committed result figures of experiments/results/ become part of the site.

``experiments/results/<run>/<name>.png`` is served as ``results/<run>/<name>.png``, so the guides
show the figures a user compares a run against without a second copy in docs/. A guide linking
to a figure that is no longer committed fails the strict build (a missing link target).

Enabled in ``mkdocs.yml`` under ``hooks``.
"""

from __future__ import annotations

import pathlib

from mkdocs.structure.files import File

RESULTS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "results"


def on_files(files, config):
    for path in sorted(RESULTS.glob("*/*.png")):
        uri = f"results/{path.relative_to(RESULTS).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
