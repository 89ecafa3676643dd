"""Discord bot that renders AI videos with Kling and Sora."""

__version__ = "0.1.0"
