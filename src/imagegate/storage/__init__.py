"""Blob stores: bytes under opaque keys (uploaded files, output images)."""
