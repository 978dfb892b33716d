"""Small importable example apps that the worker tests run in real worker processes."""
