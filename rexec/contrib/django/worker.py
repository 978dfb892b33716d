"""The worker module of ``manage.py rexec_worker``: ``rexec.contrib.django.worker:app``.

Each worker process imports it: it sets Django up (``DJANGO_SETTINGS_MODULE`` comes
from the command's environment), finds the tasks of the backend named by
``REXEC_DJANGO_BACKEND`` (default ``default``) and builds the rexec App that runs them.
"""

from __future__ import annotations

import os

import django

django.setup()

from rexec.contrib.django.backend import backend  # noqa: E402  (after django.setup())

BACKEND_ENV = "REXEC_DJANGO_BACKEND"

app = backend(os.environ.get(BACKEND_ENV) or "default").worker_app()
