"""`worldmodels play`: drive inside the dream from a browser (session.py: the state; server.py: the web)."""
