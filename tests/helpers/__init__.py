"""Plain helpers shared by the test tiers (constants, builders, server processes).

Fixtures live in the conftest.py files; test modules import helpers from here and never
from each other.
"""
