"""Helpers every layer may use: the error hierarchy."""
