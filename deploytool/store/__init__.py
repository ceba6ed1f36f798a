"""The bundle on disk: layout and hashing (bundle.py), the typed manifest, the reader (the trust boundary),
signing.
"""
