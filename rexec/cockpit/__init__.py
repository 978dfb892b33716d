"""The rexec cockpit: a JSON API and a web UI for operators, in one ASGI app.

It reads and acts only through the public App / Management / Store API; the runtime
never imports it. ``rexec cockpit`` (:mod:`rexec.cockpit.cli`) serves it, and
:func:`rexec.cockpit.app.create_app` builds it for any ASGI server. This module imports
nothing, so that ``rexec --help`` stays fast.
"""
