"""Soft-label experiments ("A Label is Worth a Thousand Images"): each is one command writing
JSON + markdown + PNG into --out, resumable cell by cell."""
