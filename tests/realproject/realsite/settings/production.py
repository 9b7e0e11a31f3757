import os

from .base import *  # noqa: F403

PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {"bind": "127.0.0.1:" + os.environ.get("PORT", "8000"), "workers": "1"},
    },
    "worker": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"queue": "default"},
    },
}
