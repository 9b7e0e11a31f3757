"""Settings of a worker's own, as projects give one (``ARGS {"settings": ...}``): the project's,
on the PostgreSQL database DJPROJECT_WORKER_PG names if set, else on the project's SQLite file
spelled another way (relative to the project folder). Tests of one database for everyone.
"""

import os

from djproject.settings import *  # noqa: F403
from djproject.settings import DATABASES

if os.environ.get("DJPROJECT_WORKER_PG"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["DJPROJECT_WORKER_PG"],
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "USER": "postgres",
            "PASSWORD": "worker-only-password",  # trust auth ignores it; no report may show it
        }
    }
else:
    DATABASES["default"]["NAME"] = os.path.relpath(DATABASES["default"]["NAME"])
