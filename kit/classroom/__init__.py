"""The class server: one cloud for the whole room, behind the instructor's web site.

store (accounts, sessions, ownership) ← passwords, roster, web_certificate ← site (FastAPI) ←
server (`kit class serve`). The cloud behind it is any `kit.cloud.Cloud`.
"""
