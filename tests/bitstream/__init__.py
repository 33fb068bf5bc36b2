"""Tests, in folders by layer (tests/README.md)."""
