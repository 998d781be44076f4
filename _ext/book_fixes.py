"""Small fixes to the HTML the book's Sphinx extensions produce (a local Sphinx extension, see _config.yml).

sphinx-thebe registers its inline configuration script (``const THEBE_JS_URL = ...``) twice, and the second
copy throws "Identifier 'THEBE_JS_URL' has already been declared" in every page's console. Each page gets
every script once here: exact duplicates (same file, same attributes and body; no file given as None or
"") are dropped.
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (
            getattr(script, "filename", str(script)) or "",
            tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
