"""The CLI's commands, one module per command group, each imported only when run.

``chat`` (the chat and ``logs``), ``web`` (the chat in a browser), ``oneshot`` (``prompt``, ``tokens``), ``plugins``
(``plugins list|health|logs|enable|disable|grant|revoke``), ``authoring`` (``plugins
new|check|install|remove``), ``keys`` and ``agent`` (``agent status|stop``, and the agent
itself); ``warm`` chooses the agent's handle or the direct one for ``prompt`` and ``tokens``.
Each exposes functions ``(args, context) -> int``
returning an ``app.exits`` status. Only ``app.cli`` imports them (and one command module
another); they import the layers below (``app.context``, ``app.chat``, ``app.health``, the
manager, the stores), never ``app.cli``.
"""
