"""The plugin child's side of the runner: everything that runs in the sandboxed process.

The host starts ``python -I -S runner/child/entry.py``; nothing on the host imports this
package (tests may). Its modules import the standard library, ``llm_utils``, the shared
modules (``runner.constants``, ``runner.protocol``, ``runner.budget``, ``runner.netwire``)
and ``runner.sandbox``, never a host module, and never run ``runner/__init__.py``.

- ``entry`` the entry point: claims the channel, applies the sandbox, reads the code.
- ``netshim`` (network profile) Python's socket layer routed through the host's broker.
- ``server`` the hello and the request loop; ``loader`` runs the plugin's code.
"""

__all__: list[str] = []
