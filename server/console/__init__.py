"""The review console: the queue and its cases as web pages, served on a port of its own beside gRPC.

Server-rendered (Starlette, Jinja2 templates, plain HTML forms: no front-end framework), usable from the
keyboard, behind a token: ``app`` builds the pages, ``highlight`` marks the extracted values in an
invoice's text, ``server`` runs it in the serving process.
"""

from smallguard.server.console.app import Login, console_app
from smallguard.server.console.server import ConsoleServer

__all__ = ["ConsoleServer", "Login", "console_app"]
