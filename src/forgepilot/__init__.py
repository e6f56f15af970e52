"""ForgePilot: run, measure, adapt and ship your own AI coding assistant."""

__version__ = "0.1.0"
