"""`{vfn-config-reference} module.Schema`: the reference table of a pydantic schema, built from the
schema itself (`vfn.config.keys.key_docs`) at every docs build, so it cannot drift from the code.

One table per section (`model.*`, `data.*`, ...): key, type, default, bounds, description. The
tables are docutils nodes built here (not text handed to a parser: the page around them is MyST).
"""

from __future__ import annotations

import importlib

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from vfn.config.keys import KeyDoc, key_docs

COLUMNS = (("key", 22), ("type", 18), ("default", 12), ("bounds", 10), ("description", 38))


def cell(text: str, literal: bool) -> nodes.entry:
    paragraph = nodes.paragraph()
    if text:
        paragraph += nodes.literal(text=text) if literal else nodes.Text(text)
    return nodes.entry("", paragraph)


def row(values: list[str], literal: tuple[bool, ...]) -> nodes.row:
    return nodes.row("", *(cell(v, lit) for v, lit in zip(values, literal)))


def section_table(title: str, docs: list[KeyDoc]) -> nodes.table:
    group = nodes.tgroup(cols=len(COLUMNS))
    group += [nodes.colspec(colwidth=width) for _, width in COLUMNS]
    group += nodes.thead("", row([name for name, _ in COLUMNS], (False,) * len(COLUMNS)))
    group += nodes.tbody("", *(row(list(d), (True, True, True, False, False)) for d in docs))
    table = nodes.table("", nodes.title(text=title), group)
    table["classes"].append("vfn-config")
    return table


class ConfigReference(SphinxDirective):
    required_arguments = 1  # dotted path of the schema class

    def run(self) -> list[nodes.Node]:
        module, _, name = self.arguments[0].rpartition(".")
        schema = getattr(importlib.import_module(module), name)
        sections: dict[str, list[KeyDoc]] = {}
        for d in key_docs(schema):
            sections.setdefault(d.key.split(".")[0] if "." in d.key else "top level", []).append(d)
        return [section_table(section, docs) for section, docs in sections.items()]


def setup(app):
    app.add_directive("vfn-config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
