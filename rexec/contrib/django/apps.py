"""The Django app that brings the ``rexec_worker`` management command."""

from __future__ import annotations

from django.apps import AppConfig


class RexecConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    name = "rexec.contrib.django"
    label = "rexec"
    verbose_name = "rexec"
