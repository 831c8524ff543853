"""The package version, in a module of its own so low-level code (run folders, the server) can
read it without importing `paretune/__init__.py`, whose lazy names lead to the runner."""
__version__ = "0.1.0"
