"""The ``genre`` command line: parses, calls the service, prints. Nothing else.

``main.py`` holds the app and its core commands; ``chat.py`` the chat, profile and enrich
commands; the harness adds ``genre eval`` and ``genre tune`` through the
"genre_agent.commands" entry point group. This package imports nothing on its own, so the
harness's command module can use ``cli.common`` without loading the app.
"""
