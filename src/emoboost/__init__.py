"""emoboost: speech emotion recognition on self-supervised speech representations."""

__version__ = "0.1.0"
