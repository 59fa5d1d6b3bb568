"""`gifsent-train collect`: a GIFGIF-style voting page that spends votes where they teach most.

Modules: ``storage`` (SQLite or PostgreSQL, versioned migrations, one schema), ``pairs``
(active pair choice: expected information gain under the Bradley-Terry posterior mixed with
spanning-tree pairs), ``pages`` (the HTML), ``app`` (the ASGI app: voters, CSRF, token,
rate limits) and ``cli`` (the commands).
"""
