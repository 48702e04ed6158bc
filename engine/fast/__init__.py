"""Optimised inference formulations: each equals its eager PyTorch reference within 1e-4 (tests)."""
