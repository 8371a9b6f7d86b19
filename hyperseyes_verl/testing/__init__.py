"""Offline test utilities: tiny random Qwen-VL models and the CPU processor workaround.

Used by the test suite and the benchmarks; never imported by training code.
"""
