"""The package version, on the bottom floor so that any module may state it (file headers, cards)."""

__version__ = "0.1.0"
