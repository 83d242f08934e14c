"""Imperative shell: everything that touches sockets, files, signals, threads and time."""
