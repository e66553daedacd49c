"""Serving an X-LLaVA directory: an OpenAI-compatible server, a terminal chat and a web demo page.

`engine` batches generation for many requests at once, `app` speaks the OpenAI protocol over it,
`chat` talks to it from a terminal, `web` is the demo page the app serves at `/`.
"""

from xllava.serve.config import ServeConfig

__all__ = ["ServeConfig"]
