"""Shared builders of the tests (not tests themselves): configs, peers, waits, environment.

Test modules import from here (and fixtures come from tests/conftest.py); no test module
imports from another test module. See tests/README.md.
"""
