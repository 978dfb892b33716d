"""``django-admin rexec_worker [--backend ALIAS] [rexec worker options]``: a rexec worker
node for the tasks of a ``RexecBackend``, with every option of ``rexec worker``."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

APP_PATH = "rexec.contrib.django.worker:app"
BACKEND_ENV = "REXEC_DJANGO_BACKEND"
# Options django-admin itself reads before it runs a command.
DJANGO_OPTIONS = ("--settings", "--pythonpath")


def split_arguments(argv: list[str]) -> tuple[str, list[str], list[str]]:
    """(backend alias, Django's own options, the rest for ``rexec worker``)."""
    alias = "default"
    django_options: list[str] = []
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        name, eq, value = word.partition("=")
        if name in ("--backend", *DJANGO_OPTIONS):
            if not eq:
                value = next(words, "")
                if not value or value.startswith("-"):
                    raise CommandError(f"{name} needs a value")
            if name == "--backend":
                alias = value
            else:
                django_options += [name, value]
        else:
            rest.append(word)
    return alias, django_options, rest


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = (
        "Runs a rexec worker node for the tasks of a RexecBackend (--backend ALIAS, default"
        " 'default'); every other option is rexec worker's (see --help)."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            self._run(argv)
        except CommandError as exc:
            sys.stderr.write(f"CommandError: {exc}\n")
            sys.exit(exc.returncode)

    def _run(self, argv: list[str]) -> None:
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        alias, django_options, rest = split_arguments(argv[2:])
        for name, value in zip(django_options[::2], django_options[1::2], strict=True):
            if name == "--pythonpath":  # the worker processes import from there too
                sys.path.insert(0, value)
                os.environ["PYTHONPATH"] = os.pathsep.join(
                    p for p in (value, os.environ.get("PYTHONPATH", "")) if p
                )
            else:
                os.environ["DJANGO_SETTINGS_MODULE"] = value
        if "--help" in rest or "-h" in rest:
            self.print_help(prog, "")
        self._check(alias)
        os.environ[BACKEND_ENV] = alias
        from rexec.cli import worker

        worker.main(args=[APP_PATH, *rest], prog_name=prog)

    def print_help(self, prog_name: str, subcommand: str) -> None:
        sys.stdout.write(
            f"usage: {prog_name} [--backend ALIAS] [rexec worker options]\n\n{self.help}\n\n"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # call_command() lands here: run the node with the defaults.
        self._run(["django-admin", "rexec_worker"])

    @staticmethod
    def _check(alias: str) -> None:
        from rexec.contrib.django.backend import backend
        from rexec.errors import RexecError

        try:
            backend(alias)
        except RexecError as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:  # an unknown alias: Django's InvalidTaskBackend
            raise CommandError(f"no task backend {alias!r}: {exc}") from exc
