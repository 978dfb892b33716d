"""rexec as a Django Tasks backend (``django.tasks``, or the ``django-tasks`` backport).

``TASKS = {"default": {"BACKEND": "rexec.contrib.django.RexecBackend", ...}}`` and
``"rexec.contrib.django"`` in ``INSTALLED_APPS`` (for ``manage.py rexec_worker``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rexec.contrib.django.backend import RexecBackend

__all__ = ["RexecBackend"]


def __getattr__(name: str) -> Any:
    # Lazy: Django's app registry imports this package before settings are usable.
    if name == "RexecBackend":
        from rexec.contrib.django.backend import RexecBackend

        return RexecBackend
    raise AttributeError(name)
