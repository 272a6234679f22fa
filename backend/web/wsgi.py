"""The WSGI application gunicorn serves (`backend.web.wsgi:app`)."""

from backend.logs import configure_logging
from backend.settings import Settings
from backend.web.ml_adapter import create_app

settings = Settings.from_env()
configure_logging(settings)
app = create_app(settings)
