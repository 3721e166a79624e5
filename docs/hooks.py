"""mkdocs hook: put the committed result figures (``results/<name>/<name>.png``) into the site as
``gallery/<name>/<name>.png``, so the Figures guide shows them without a copy under docs/."""

from __future__ import annotations

import glob
import os

from mkdocs.structure.files import File


def on_files(files, config):
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    results = os.path.join(root, "results")
    for path in sorted(glob.glob(os.path.join(results, "*", "*.png"))):
        uri = "gallery/" + os.path.relpath(path, results).replace(os.sep, "/")
        files.append(File.generated(config, uri, abs_src_path=path))
    return files
