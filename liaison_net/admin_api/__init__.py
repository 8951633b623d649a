"""The administrator's door of a running node: a local socket (see ``routes``)."""
