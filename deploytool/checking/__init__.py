"""Checking: parity metrics and tiers, the judge (verdicts, blame, exit codes), golden sets, localising the first
diverging op.
"""
