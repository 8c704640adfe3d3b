"""Trained weights shipped with tinycodec (package data; see README.md here)."""
