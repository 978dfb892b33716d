"""Settings of the Django project the backend's tests run: rexec as its task backend.

The Redis URL and namespace come from the environment the tests give it.
"""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["rexec.contrib.django", "storefront"]
DATABASES: dict[str, dict[str, str]] = {}

TASKS = {
    "default": {
        "BACKEND": "rexec.contrib.django.RexecBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {
            "REDIS_URL": os.environ.get("REXEC_REDIS_URL"),
            "NAMESPACE": os.environ.get("REXEC_NAMESPACE", "django"),
        },
    },
}
