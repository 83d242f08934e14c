"""The command line: the argument parser and one handler per command."""
