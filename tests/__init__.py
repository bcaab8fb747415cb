"""Test package (lets tests import the seeded fixture writers as tests.fixtures.*)."""
