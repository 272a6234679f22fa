"""The WSGI application gunicorn serves (`backend.wsgi:app`)."""

from .logs import configure_logging
from .ml_adapter import create_app
from .settings import Settings

settings = Settings.from_env()
configure_logging(settings)
app = create_app(settings)
