"""mma: a multi-messenger correlation daemon for time-domain astronomy."""

__version__ = "0.1.0"
