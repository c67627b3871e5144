"""Byte-level declarations of the checkpoint image formats (construct).

This layer knows bytes and record grammars only; it never imports crfs.model.
"""
