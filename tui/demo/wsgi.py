"""WSGI entry point for the demo, as gunicorn's ``tui.demo.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tui.demo.settings")

application = get_wsgi_application()
