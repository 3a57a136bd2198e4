"""sandchat's benchmark (issue 7): ``python -m bench [--quick] [--json]``.

Every figure is measured beside its baseline in the same run, interleaved in short
blocks (baseline block, subject block, baseline block, ...), so a machine that gets
busier halfway hurts both alike. Each figure runs twice: with the benchmark and
every process it starts pinned to CPU 0 ("one CPU"), and unpinned ("free"). The
plugin is a trivial one (no imports beyond ``llm_utils``) under the full untrusted
sandbox, driven only through the public API: ``PluginManager(...).handle(name)``.

Modules, one per figure: ``calls`` (1, 3), ``payload`` (2), ``startup`` (4, 5),
``tokencount`` (6), ``cli`` (7), ``peers`` (8); ``common`` holds the shared parts.
"""
