"""Measuring: the timing protocol and statistics, the GEMM peak probe, FLOP counting, the machine fingerprint.
"""
