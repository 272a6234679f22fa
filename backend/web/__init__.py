"""The HTTP side: the label-studio-ml adapter, what each endpoint does, webhooks, OpenAPI, the WSGI entry."""
