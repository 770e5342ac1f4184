"""lrisc-sim: link-level simulator for wireless image transmission."""

__version__ = "0.1.0"
