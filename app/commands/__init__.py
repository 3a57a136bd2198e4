"""The CLI's commands, one module per command group, each imported only when run.

``chat`` (the chat and ``logs``), ``web`` (the chat in a browser), ``oneshot`` (``prompt``, ``tokens``), ``plugins``
(``plugins list|health|logs|enable|disable|grant|revoke``), ``authoring`` (``plugins
new|check|install|remove``) and ``keys``. Each exposes functions ``(args, context) -> int``
returning an ``app.exits`` status. Only ``app.cli`` imports them (and one command module
another); they import the layers below (``app.context``, ``app.chat``, ``app.health``, the
manager, the stores), never ``app.cli``.
"""
