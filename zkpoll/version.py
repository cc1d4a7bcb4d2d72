"""The version of zkpoll, the single place it is defined."""

__version__ = "0.1.0"
