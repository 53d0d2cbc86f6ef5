"""`hpsearch ui`: a live web dashboard that reads the database through the read-only path.

Imports neither Ray nor the writing Store; the server and its static files ship in this package.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
