"""`{vfn-config-reference} module.Schema`: the reference table of a pydantic schema, built from the
schema itself (`vfn.config.keys.key_docs`) at every docs build, so it cannot drift from the code.

One table per section (`model.*`, `data.*`, ...): key, type, default, bounds, description.
"""

from __future__ import annotations

import importlib

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from vfn.config.keys import KeyDoc, key_docs


def literal(text: str) -> str:
    return f"``{text}``" if text else ""


def table_rst(title: str, docs: list[KeyDoc]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", "   :widths: 22 18 12 10 38", "",
             "   * - key", "     - type", "     - default", "     - bounds", "     - description"]
    for d in docs:
        cells = [literal(d.key), literal(d.type), literal(d.default), d.bounds, d.description]
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {c.replace(chr(10), ' ')}" for c in cells[1:]]
    return lines + [""]


class ConfigReference(SphinxDirective):
    required_arguments = 1  # dotted path of the schema class

    def run(self) -> list[nodes.Node]:
        module, _, name = self.arguments[0].rpartition(".")
        schema = getattr(importlib.import_module(module), name)
        sections: dict[str, list[KeyDoc]] = {}
        for d in key_docs(schema):
            sections.setdefault(d.key.split(".")[0] if "." in d.key else "(top level)", []).append(d)
        rst: list[str] = []
        for section, docs in sections.items():
            rst += table_rst(section, docs)
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source=self.arguments[0]), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("vfn-config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
