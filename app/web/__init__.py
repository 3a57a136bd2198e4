"""The browser chat (``sandchat web``): a local page over the chat core, served on loopback.

Needs the optional ``[web]`` extra (``pip install -e '.[web]'``): Starlette and uvicorn
serve it, markdown-it-py and nh3 turn plugin Markdown into HTML that is safe to show.
``security`` is the gate every request passes, ``markup`` the sanitising renderer,
``webchat`` the per-browser chat over ``app.chatcore``, ``server`` the routes.
"""

__all__: list[str] = []
