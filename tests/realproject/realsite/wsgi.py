"""gunicorn imports this: like manage.py it loads .env, so the web server sees DATABASE_URL."""

import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application
from dotenv import load_dotenv

load_dotenv(Path(__file__).resolve().parent.parent / ".env")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realsite.settings.production")

application = get_wsgi_application()
